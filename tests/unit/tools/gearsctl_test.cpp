// The tools' control commands, gearsctl's argument parsing and tables, and gearsctl end to end
// against an in-process server.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <string>

#include "control/control_client.h"
#include "control/control_server.h"
#include "gearsctl/args.h"
#include "gearsctl/format.h"
#include "tools/proctrack/commands.h"
#include "tools/proctrack/linux_syscalls.h"
#include "tools/syscall_exit/syscall_exit_tool.h"

namespace gears {
namespace {

using vmm::control::CommandRegistry;
using vmm::control::Json;
using vmm::syscall_exit::SyscallExitTool;

Json ask(const CommandRegistry& r, const Json& req) { return Json::parse(r.handle_line(req.dump())); }

TEST(SyscallExitTool, UserAndToolSelectionsCombine) {
  SyscallExitTool t(512);
  ASSERT_TRUE(t.acquire(59));  // proctrack needs execve
  EXPECT_TRUE(t.selected(59));
  ASSERT_TRUE(t.set_user(59, true));
  ASSERT_TRUE(t.set_user(59, false));
  EXPECT_TRUE(t.selected(59));  // the user's "off" does not remove the tool's hold
  t.release(59);
  EXPECT_FALSE(t.selected(59));
  EXPECT_FALSE(t.set_user(512, true));
  EXPECT_FALSE(t.acquire(9999));
}

TEST(SyscallExitTool, AttachMovesSelectionIntoGuestBytes) {
  SyscallExitTool t(64);
  ASSERT_TRUE(t.set_user(3, true));
  std::vector<uint8_t> guest(8, 0xFF);
  ASSERT_TRUE(t.attach(guest));
  EXPECT_EQ(guest[0], 1u << 3);
  EXPECT_EQ(guest[1], 0u);
  ASSERT_TRUE(t.set_user(9, true));
  EXPECT_EQ(guest[1], 1u << 1);
  std::vector<uint8_t> tiny(2);
  EXPECT_FALSE(SyscallExitTool(64).attach(tiny));
}

TEST(SyscallExitTool, StubExitDecodesAndFansOut) {
  SyscallExitTool t(512);
  std::vector<vmm::syscall_exit::SyscallEvent> seen;
  t.subscribe([&](const auto& ev, vmm::VcpuRegs& regs) {
    seen.push_back(ev);
    regs.rdi = 0x1234;  // a tool may rewrite arguments
  });
  vmm::VcpuRegs regs;
  regs.rax = 0xFFFF'FFFF'0000'003BULL;  // execve with junk in the upper half
  regs.rdi = 1, regs.rsi = 2, regs.rdx = 3, regs.r10 = 4, regs.r8 = 5, regs.r9 = 6;
  regs.rcx = 0x401000;
  regs.cr3 = 0x5000;
  t.on_stub_exit(1, regs, 77);
  regs.rax = 0x4745;
  t.on_stub_exit(0, regs, 78);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].nr, 59u);
  EXPECT_EQ(seen[0].args, (std::array<uint64_t, 6>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(seen[0].user_rip, 0x401000u);
  EXPECT_EQ(seen[0].cr3, 0x5000u);
  EXPECT_EQ(seen[0].vcpu, 1u);
  EXPECT_EQ(regs.rdi, 0x1234u);
  EXPECT_EQ(t.exits(59), 1u);
  EXPECT_EQ(t.exits_total(), 2u);
}

TEST(SyscallExitTool, Commands) {
  CommandRegistry r;
  SyscallExitTool t(512);
  ASSERT_TRUE(t.register_commands(r));
  EXPECT_TRUE(ask(r, {{"cmd", "intercept"}, {"nr", 39}, {"on", true}})["ok"].get<bool>());
  EXPECT_TRUE(t.selected(39));
  auto bad = ask(r, {{"cmd", "intercept"}, {"nr", 600}, {"on", true}});
  EXPECT_FALSE(bad["ok"].get<bool>());
  EXPECT_EQ(bad["error"], "syscall number 600 is outside the stub's table (0..511)");
  EXPECT_FALSE(ask(r, {{"cmd", "intercept"}, {"nr", -1}, {"on", true}})["ok"].get<bool>());
  EXPECT_FALSE(ask(r, {{"cmd", "intercept"}, {"nr", 1}})["ok"].get<bool>());  // no "on"
  auto list = ask(r, {{"cmd", "syscalls"}});
  ASSERT_EQ(list["syscalls"].size(), 1u);
  EXPECT_EQ(list["syscalls"][0]["nr"], 39);
  EXPECT_EQ(list["installed"], false);
  EXPECT_TRUE(ask(r, {{"cmd", "intercept"}, {"nr", "all"}, {"on", true}})["ok"].get<bool>());
  EXPECT_EQ(ask(r, {{"cmd", "stats"}})["stats"]["syscall_exit"]["selected"], 512);
}

TEST(ProcTrackCommands, ProcessesAndStats) {
  namespace pt = vmm::proctrack;
  CommandRegistry r;
  pt::SharedTracker tracker;
  ASSERT_TRUE(pt::register_commands(r, tracker));
  tracker.with([](pt::ProcessTracker& t) {
    pt::SyscallEntry e;
    e.cr3 = 0x1000;
    e.nr = pt::linux_x86_64::kExecve;
    e.exec_filename = "/bin/sh";
    t.on_syscall_entry(e);
    t.on_cr3({0, 0x2000, 10});
    t.on_syscall_exit({0, 0x2000, pt::linux_x86_64::kGetpid, 42, 11});
    t.on_cr3({1, 0x3000, 12});
    t.on_syscall_entry({1, 0x3000, pt::linux_x86_64::kExitGroup, {}, 13, {}, 0});
  });
  auto ps = ask(r, {{"cmd", "processes"}});
  ASSERT_TRUE(ps["ok"].get<bool>());
  ASSERT_EQ(ps["processes"].size(), 1u);
  EXPECT_EQ(ps["processes"][0]["exe"], "/bin/sh");
  EXPECT_EQ(ps["processes"][0]["pid"], 42);
  EXPECT_EQ(ps["counters"]["exited"], 1);
  EXPECT_EQ(ask(r, {{"cmd", "processes"}, {"all", true}})["processes"].size(), 2u);
  auto one = ask(r, {{"cmd", "process"}, {"pid", 42}});
  EXPECT_EQ(one["process"]["syscall_counts"]["59"], 1);
  EXPECT_FALSE(ask(r, {{"cmd", "process"}, {"pid", 7}})["ok"].get<bool>());
  EXPECT_FALSE(ask(r, {{"cmd", "process"}})["ok"].get<bool>());
  EXPECT_EQ(ask(r, {{"cmd", "stats"}})["stats"]["proctrack"]["created"], 2);
}

Expected<ctl::Invocation> parse(std::initializer_list<const char*> a) {
  return ctl::parse_args(std::vector<std::string>(a.begin(), a.end()));
}

TEST(GearsctlArgs, Commands) {
  auto p = parse({"--socket", "/x.sock", "--json", "intercept", "39", "on"});
  ASSERT_TRUE(p) << p.error().what();
  EXPECT_EQ(p->socket, "/x.sock");
  EXPECT_TRUE(p->json);
  EXPECT_EQ(p->request, Json::parse(R"({"cmd":"intercept","nr":39,"on":true})"));
  EXPECT_EQ(parse({"intercept", "all", "off"})->request["nr"], "all");
  EXPECT_EQ(parse({"processes"})->request, Json::parse(R"({"cmd":"processes"})"));
  EXPECT_EQ(parse({"process", "pid=42", "name=ls"})->request,
            Json::parse(R"({"cmd":"process","pid":42,"name":"ls"})"));
  EXPECT_EQ(parse({"call", R"({"cmd":"stats"})"})->request["cmd"], "stats");
  EXPECT_EQ(parse({"--timeout", "3", "stats"})->timeout_ms, 3000);
  EXPECT_TRUE(parse({"--help"})->help);
  // execve rules need no subcommand of their own: key=value splits at the first '='.
  EXPECT_EQ(parse({"inject-argv", "rule=app:=--fast=>--safe"})->request,
            Json::parse(R"({"cmd":"inject-argv","rule":"app:=--fast=>--safe"})"));
  EXPECT_EQ(parse({"inject-env", "rule=*:LD_PRELOAD+=/x.so"})->request["rule"], "*:LD_PRELOAD+=/x.so");
  EXPECT_EQ(parse({"exec-rule-remove", "id=3"})->request, Json::parse(R"({"cmd":"exec-rule-remove","id":3})"));
}

TEST(GearsctlArgs, ErrorsAreOneLine) {
  for (auto bad : {parse({}), parse({"--bogus", "stats"}), parse({"intercept", "x", "on"}),
                   parse({"intercept", "39", "maybe"}), parse({"intercept", "39"}), parse({"call", "{"}),
                   parse({"--socket"}), parse({"--timeout", "0", "stats"}), parse({"process", "novalue"})}) {
    ASSERT_FALSE(bad);
    EXPECT_EQ(bad.error().what().find('\n'), std::string::npos);
  }
}

TEST(GearsctlFormat, ProcessTable) {
  auto reply = Json::parse(R"({"ok":true,"processes":[
      {"id":1,"pid":1,"ppid":0,"cr3":4096,"state":"running","threads":1,"execs":1,"syscalls":10,"exe":"/sbin/init"},
      {"id":2,"pid":-1,"ppid":-1,"cr3":8192,"state":"running","threads":3,"execs":0,"syscalls":5,"exe":"bad\u0001name"}],
      "counters":{"created":2,"exited":0}})");
  std::string out = ctl::format_reply("processes", reply);
  EXPECT_NE(out.find("ID  PID  PPID  CR3     STATE    THREADS  EXECS  SYSCALLS  EXE"), std::string::npos) << out;
  EXPECT_NE(out.find("0x1000"), std::string::npos);
  EXPECT_NE(out.find("/sbin/init"), std::string::npos);
  EXPECT_NE(out.find("bad?name"), std::string::npos);  // control characters from the guest
  EXPECT_NE(out.find("(created 2, exited 0)"), std::string::npos);
}

TEST(GearsctlFormat, GenericAndStats) {
  auto stats = Json::parse(R"({"ok":true,"stats":{"proctrack":{"created":3},"vm":{"vcpus":2}}})");
  std::string out = ctl::format_reply("stats", stats);
  EXPECT_NE(out.find("stats.proctrack.created: 3"), std::string::npos) << out;
  EXPECT_NE(out.find("stats.vm.vcpus: 2"), std::string::npos);
  EXPECT_EQ(ctl::format_reply("intercept", Json::parse(R"({"ok":true})")), "ok\n");
  auto list = ctl::format_reply("other", Json::parse(R"({"ok":true,"items":[{"b":1,"a":"x"}]})"));
  EXPECT_NE(list.find("A  B"), std::string::npos) << list;
  // The execve rules as `gearsctl exec-rules` shows them (the generic table).
  auto rules = ctl::format_reply("exec-rules", Json::parse(
      R"({"ok":true,"rules":[{"id":3,"kind":"argv","glob":"cat","edit":"+-n","source":"control"}]})"));
  EXPECT_NE(rules.find("rules:\nEDIT  GLOB  ID  KIND  SOURCE\n+-n   cat   3   argv  control"), std::string::npos) << rules;
}

#ifdef GEARSCTL_PATH
// gearsctl the binary against a live in-process server.
TEST(GearsctlEndToEnd, TalksToServer) {
  char tmpl[] = "/tmp/gears-ctl-e2e-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl, sock = dir + "/vmm.sock";
  CommandRegistry r;
  SyscallExitTool t(512);
  ASSERT_TRUE(t.register_commands(r));
  auto server = vmm::control::ControlServer::start(sock, r);
  ASSERT_TRUE(server) << server.error().what();

  auto run = [&](const std::string& args, int* rc) {
    std::string cmd = std::string(GEARSCTL_PATH) + " --socket " + sock + " " + args + " 2>&1";
    std::string out;
    FILE* f = popen(cmd.c_str(), "r");
    char buf[512];
    while (f && fgets(buf, sizeof buf, f)) out += buf;
    int status = f ? pclose(f) : -1;
    *rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  };
  int rc = -1;
  EXPECT_EQ(run("intercept 39 on", &rc), "intercept: yes\nnr: 39\non: yes\n");
  EXPECT_EQ(rc, 0);
  EXPECT_TRUE(t.selected(39));
  std::string table = run("syscalls", &rc);
  EXPECT_NE(table.find("NR  INTERCEPT  USER  TOOLS  EXITS"), std::string::npos) << table;
  std::string json = run("--json syscalls", &rc);
  EXPECT_TRUE(Json::parse(json)["ok"].get<bool>());
  EXPECT_EQ(run("intercept 9999 on", &rc), "gearsctl: syscall number 9999 is outside the stub's table (0..511)\n");
  EXPECT_EQ(rc, 1);
  EXPECT_EQ(run("nosuch", &rc), "gearsctl: unknown command \"nosuch\" (try \"help\")\n");
  server->reset();
  std::string none = run("stats", &rc);
  EXPECT_EQ(rc, 3);
  EXPECT_EQ(none.rfind("gearsctl: no gears-vmm is listening on " + sock, 0), 0u) << none;
  rmdir(dir.c_str());
}
#endif

}  // namespace
}  // namespace gears
