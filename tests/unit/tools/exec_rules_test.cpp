// The execve rules: their text, the one store (ids, globs, activation, limits, threads) and
// its control commands.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "control/command_registry.h"
#include "tools/execve/exec_commands.h"
#include "tools/execve/exec_rules.h"

namespace gears::vmm::execve {
namespace {

using control::Json;
using Op = ArgvEdit::Op;

TEST(ExecRuleText, ArgvRules) {
  struct Case {
    const char* spec;
    const char* glob;
    ArgvEdit edit;
  };
  for (const auto& c : std::vector<Case>{
           {"gcc:+-g", "gcc", {Op::kAppend, "-g", {}}},
           {"*/bin/cc:^-v", "*/bin/cc", {Op::kInsertFirst, "-v", {}}},
           {"curl:---verbose", "curl", {Op::kRemove, "--verbose", {}}},  // the '-' is the operator
           {"app:=--fast=>--safe", "app", {Op::kReplace, "--fast", "--safe"}},
           {"app:=a=b=>c=>d", "app", {Op::kReplace, "a=b", "c=>d"}},  // OLD ends at the first "=>"
           {"app:=x=>", "app", {Op::kReplace, "x", ""}},
           {"app:+", "app", {Op::kAppend, "", {}}},
           {"app:+host:port", "app", {Op::kAppend, "host:port", {}}},
       }) {
    auto r = parse_argv_rule(c.spec);
    ASSERT_TRUE(r) << c.spec << ": " << r.error().what();
    EXPECT_EQ(r->pattern, c.glob) << c.spec;
    EXPECT_EQ(r->edit, c.edit) << c.spec;
    EXPECT_EQ(std::string(r->pattern) + ":" + edit_text(r->edit), c.spec);  // the listing shows the same text
  }
  for (const char* bad : {"noglob", ":+x", "app:", "app:x", "app:=nope", "app:*x"}) {
    auto r = parse_argv_rule(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find(std::string("'") + bad + "'"), std::string::npos) << r.error().message;
  }
}

TEST(ExecRuleText, EnvRules) {
  auto r = parse_env_rule("*:LD_PRELOAD+=/lib/x.so");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pattern, "*");
  EXPECT_EQ(r->edit, (EnvEdit{"LD_PRELOAD", "/lib/x.so", EnvEdit::Mode::kPrepend}));
  EXPECT_EQ(edit_text(r->edit), "LD_PRELOAD+=/lib/x.so");
  EXPECT_EQ(edit_text(EnvEdit{"A", "b=c"}), "A=b=c");
  for (const char* bad : {"noglob", "*:=v", ":A=b", "*:A", "*:+=v", "*:A B=v"}) EXPECT_FALSE(parse_env_rule(bad)) << bad;
}

TEST(ExecRuleText, GlobsMatchThePathOrItsLastComponent) {
  EXPECT_TRUE(program_matches("cat", "/bin/cat"));
  EXPECT_TRUE(program_matches("/bin/cat", "/bin/cat"));
  EXPECT_TRUE(program_matches("*/bin/*", "/usr/bin/cat"));
  EXPECT_TRUE(program_matches("gears-*", "/usr/bin/gears-testprog"));
  EXPECT_TRUE(program_matches("cat", "cat"));
  EXPECT_FALSE(program_matches("cat", "/bin/concat"));
  EXPECT_FALSE(program_matches("bin", "/bin/cat"));
  EXPECT_FALSE(program_matches("cat", "/bin/cat/"));
}

TEST(ExecRulesStore, AddListRemoveAndEditsFor) {
  ExecRules rules;
  EXPECT_TRUE(rules.empty());
  EXPECT_TRUE(rules.edits_for("/bin/cat").empty());
  auto a = rules.add(*parse_env_rule("cat:LD_PRELOAD+=/x.so"), kFromDeploy);
  auto b = rules.add(*parse_argv_rule("cat:+-n"), kFromOption);
  auto c = rules.add(*parse_argv_rule("*sh:^-x"), kFromControl);
  auto d = rules.add(*parse_env_rule("*:GEARS=1"), kFromControl);
  ASSERT_TRUE(a && b && c && d);
  EXPECT_EQ(*a, 1u);
  EXPECT_EQ(*d, 4u);
  EXPECT_EQ(rules.size(), 4u);
  auto list = rules.list();
  ASSERT_EQ(list.size(), 4u);
  EXPECT_STREQ(list[0].kind(), "env");
  EXPECT_STREQ(list[1].kind(), "argv");
  EXPECT_EQ(list[2].pattern, "*sh");
  EXPECT_EQ(list[0].source, kFromDeploy);

  // edits_for: what applies, in the order added, split by kind.
  auto cat = rules.edits_for("/bin/cat");
  EXPECT_EQ(cat.env, (std::vector<EnvEdit>{{"LD_PRELOAD", "/x.so", EnvEdit::Mode::kPrepend}, {"GEARS", "1"}}));
  EXPECT_EQ(cat.argv, (std::vector<ArgvEdit>{{Op::kAppend, "-n", {}}}));
  auto sh = rules.edits_for("/bin/bash");
  EXPECT_EQ(sh.env.size(), 1u);
  EXPECT_EQ(sh.argv, (std::vector<ArgvEdit>{{Op::kInsertFirst, "-x", {}}}));

  EXPECT_TRUE(rules.remove(*b));
  EXPECT_FALSE(rules.remove(*b));
  EXPECT_FALSE(rules.remove(999));
  EXPECT_FALSE(rules.find(*b));
  EXPECT_EQ(rules.find(*c)->pattern, "*sh");
  EXPECT_TRUE(rules.edits_for("/bin/cat").argv.empty());
  // Ids are never reused.
  EXPECT_EQ(*rules.add(*parse_argv_rule("cat:+-n"), kFromControl), 5u);
}

TEST(ExecRulesStore, ActivationFollowsTheFirstAndLastRule) {
  std::vector<bool> calls;
  bool refuse = true;
  ExecRules rules([&](bool on) -> Expected<void> {
    calls.push_back(on);
    if (on && refuse) return fail("execve cannot be selected");
    return {};
  });
  auto refused = rules.add(*parse_argv_rule("x:+y"), kFromControl);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().message, "execve cannot be selected");
  EXPECT_TRUE(rules.empty());
  refuse = false;
  auto a = rules.add(*parse_argv_rule("x:+y"), kFromControl);
  auto b = rules.add(*parse_env_rule("x:A=b"), kFromControl);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(calls, (std::vector<bool>{true, true}));  // the refused one, then the first that stayed
  rules.remove(*a);
  EXPECT_EQ(calls.size(), 2u);
  rules.remove(*b);
  EXPECT_EQ(calls, (std::vector<bool>{true, true, false}));
}

TEST(ExecRulesStore, Limits) {
  ExecRules rules;
  const std::string big(ExecRules::kMaxText + 1, 'a');
  EXPECT_FALSE(rules.add("x", ArgvEdit{Op::kAppend, big, {}}, kFromControl));
  EXPECT_FALSE(rules.add("x", ArgvEdit{Op::kReplace, "a", big}, kFromControl));
  EXPECT_FALSE(rules.add("x", EnvEdit{"A", big}, kFromControl));
  EXPECT_FALSE(rules.add(big, EnvEdit{"A", "b"}, kFromControl));
  EXPECT_FALSE(rules.add("", EnvEdit{"A", "b"}, kFromControl));
  EXPECT_FALSE(rules.add("x", EnvEdit{"A=B", "b"}, kFromDeploy));  // structured edits are checked too
  EXPECT_FALSE(rules.add("x", EnvEdit{"", "b"}, kFromDeploy));
  EXPECT_FALSE(rules.add("x", ArgvEdit{Op::kAppend, std::string("a\0b", 3), {}}, kFromControl));
  EXPECT_TRUE(rules.add("x", ArgvEdit{Op::kAppend, std::string(ExecRules::kMaxText, 'a'), {}}, kFromControl));
  for (size_t i = 1; i < ExecRules::kMaxRules; ++i) ASSERT_TRUE(rules.add("x", EnvEdit{"A", "b"}, kFromControl)) << i;
  auto over = rules.add("x", EnvEdit{"A", "b"}, kFromControl);
  ASSERT_FALSE(over);
  EXPECT_NE(over.error().message.find("1024"), std::string::npos);
  EXPECT_TRUE(rules.empty() == false);
}

// vCPU threads ask at every execve while the control thread adds and removes rules.
TEST(ExecRulesStore, ConcurrentUse) {
  std::atomic<int> active{0};
  ExecRules rules([&](bool on) -> Expected<void> {
    active += on ? 1 : -1;
    return {};
  });
  ASSERT_TRUE(rules.add(*parse_env_rule("cat:A=1"), kFromOption));
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> asked{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 3; ++t)
    readers.emplace_back([&] {
      while (!stop) {
        auto e = rules.edits_for("/bin/cat");
        if (e.env.empty() || e.env[0].name != "A") ++bad;  // the first rule never goes
        for (const auto& a : e.argv)
          if (a.arg != "-n") ++bad;
        ++asked;
      }
    });
  for (int i = 0; i < 2000; ++i) {
    auto id = rules.add(*parse_argv_rule("cat:+-n"), kFromControl);
    ASSERT_TRUE(id);
    ASSERT_TRUE(rules.remove(*id));
  }
  while (asked < 1000) std::this_thread::yield();
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad, 0u);
  EXPECT_EQ(rules.size(), 1u);
  EXPECT_EQ(active, 1);
}

// ---------------------------------------------------------------------------------------------
// Control commands

class ExecCommandsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(register_commands(registry, rules)); }
  Json call(const Json& req) { return registry.handle(req); }
  ExecRules rules;
  control::CommandRegistry registry;
};

TEST_F(ExecCommandsTest, AddListRemove) {
  auto env = call({{"cmd", "inject-env"}, {"rule", "gears-*:GEARS_X=1"}});
  ASSERT_TRUE(env["ok"]) << env.dump();
  EXPECT_EQ(env["id"], 1);
  auto argv = call({{"cmd", "inject-argv"}, {"rule", "cat:+-n"}});
  ASSERT_TRUE(argv["ok"]) << argv.dump();
  EXPECT_EQ(argv["id"], 2);
  EXPECT_EQ(argv["rules"], Json::parse(R"([{"id":2,"kind":"argv","glob":"cat","edit":"+-n","source":"control"}])"));
  ASSERT_TRUE(rules.add(*parse_env_rule("sh:LD_PRELOAD+=/run/x.so"), kFromDeploy));

  // No rule: list (each command its kind; exec-rules all).
  auto envs = call({{"cmd", "inject-env"}});
  ASSERT_TRUE(envs["ok"]);
  EXPECT_FALSE(envs.contains("id"));
  ASSERT_EQ(envs["rules"].size(), 2u);
  EXPECT_EQ(envs["rules"][1]["edit"], "LD_PRELOAD+=/run/x.so");
  EXPECT_EQ(envs["rules"][1]["source"], "deploy");
  auto all = call({{"cmd", "exec-rules"}});
  ASSERT_EQ(all["rules"].size(), 3u);
  EXPECT_EQ(all["rules"][0]["kind"], "env");
  EXPECT_EQ(all["rules"][1]["kind"], "argv");

  auto rm = call({{"cmd", "exec-rule-remove"}, {"id", 2}});
  ASSERT_TRUE(rm["ok"]) << rm.dump();
  EXPECT_EQ(rm["removed"], 2);
  EXPECT_EQ(rm["rules"].size(), 2u);
  EXPECT_TRUE(rules.edits_for("/bin/cat").empty());
  EXPECT_EQ(call({{"cmd", "inject-argv"}})["rules"], Json::array());
}

TEST_F(ExecCommandsTest, Refusals) {
  ASSERT_TRUE(rules.add(*parse_env_rule("sh:LD_PRELOAD+=/run/x.so"), kFromDeploy));
  auto expect_error = [&](const Json& req, const std::string& part) {
    auto r = call(req);
    EXPECT_FALSE(r["ok"]) << req.dump();
    EXPECT_NE(r.value("error", std::string()).find(part), std::string::npos) << r.dump();
  };
  expect_error({{"cmd", "inject-argv"}, {"rule", "cat:x"}}, "argv rule 'cat:x'");
  expect_error({{"cmd", "inject-argv"}, {"rule", 5}}, "");  // wrong type
  expect_error({{"cmd", "inject-env"}, {"rule", "cat:+-n"}}, "env rule");
  expect_error({{"cmd", "exec-rule-remove"}, {"id", 7}}, "no exec rule 7");
  expect_error({{"cmd", "exec-rule-remove"}, {"id", -1}}, "positive integer");
  expect_error({{"cmd", "exec-rule-remove"}, {"id", "1"}}, "positive integer");
  expect_error({{"cmd", "exec-rule-remove"}}, "");
  expect_error({{"cmd", "exec-rule-remove"}, {"id", 1}}, "undeploy");
  EXPECT_EQ(rules.size(), 1u);
}

}  // namespace
}  // namespace gears::vmm::execve
