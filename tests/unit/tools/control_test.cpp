#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "control/command_registry.h"
#include "control/control_client.h"
#include "control/control_server.h"
#include "control/socket_path.h"

namespace gears::vmm::control {
namespace {

CommandRegistry& registry_with_tools(CommandRegistry& r) {
  EXPECT_TRUE(r.add("echo", "reply with the request", [](const Json& req) -> Expected<Json> {
    return Json{{"echo", req}};
  }));
  EXPECT_TRUE(r.add("intercept", "toggle", [](const Json& req) -> Expected<Json> {
    int nr = req.at("nr").get<int>();  // throws on a wrong type: must become an error reply
    if (nr < 0) return fail("syscall number " + std::to_string(nr) + " is negative");
    return Json{{"nr", nr}, {"on", req.value("on", false)}};
  }));
  EXPECT_TRUE(r.add("scalar", "returns a bare number", [](const Json&) -> Expected<Json> { return 42; }));
  EXPECT_TRUE(r.add("guest", "returns a guest string", [](const Json&) -> Expected<Json> {
    return Json{{"exe", std::string("/bin/\xff\xfe")}};  // invalid UTF-8 from a guest
  }));
  return r;
}

Json reply(const CommandRegistry& r, std::string_view line) {
  std::string out = r.handle_line(line);
  EXPECT_EQ(out.find('\n'), std::string::npos);
  return Json::parse(out);
}

TEST(ControlRegistry, Dispatches) {
  CommandRegistry r;
  registry_with_tools(r);
  auto ok = reply(r, R"({"cmd":"intercept","nr":39,"on":true})");
  EXPECT_EQ(ok, Json::parse(R"({"ok":true,"nr":39,"on":true})"));
  EXPECT_EQ(reply(r, R"({"cmd":"scalar"})")["result"], 42);
  auto help = reply(r, R"({"cmd":"help"})");
  ASSERT_TRUE(help["ok"].get<bool>());
  EXPECT_EQ(help["commands"].size(), 6u);  // 4 + help + stats
}

TEST(ControlRegistry, StatsSections) {
  CommandRegistry r;
  EXPECT_TRUE(r.add_stats("proctrack", [] { return Json{{"created", 3}}; }));
  EXPECT_TRUE(r.add_stats("syscall_exit", [] { return Json{{"exits", 7}}; }));
  EXPECT_FALSE(r.add_stats("proctrack", [] { return Json{}; }));
  auto j = reply(r, R"({"cmd":"stats"})");
  EXPECT_EQ(j["stats"]["proctrack"]["created"], 3);
  EXPECT_EQ(j["stats"]["syscall_exit"]["exits"], 7);
}

TEST(ControlRegistry, ErrorsAreReplies) {
  CommandRegistry r;
  registry_with_tools(r);
  auto err = [&](std::string_view line) {
    auto j = reply(r, line);
    EXPECT_FALSE(j["ok"].get<bool>()) << line;
    return j["error"].get<std::string>();
  };
  EXPECT_EQ(err("garbage"), "request is not valid JSON");
  EXPECT_EQ(err(""), "request is not valid JSON");
  EXPECT_EQ(err("[1,2]"), "request must be a JSON object like {\"cmd\":\"help\"}");
  EXPECT_EQ(err(R"({"cmd":7})"), "request has no \"cmd\" string");
  EXPECT_EQ(err(R"({"cmd":"nope"})"), "unknown command \"nope\" (try \"help\")");
  EXPECT_EQ(err(R"({"cmd":"intercept","nr":-1})"), "syscall number -1 is negative");
  EXPECT_NE(err(R"({"cmd":"intercept","nr":"x"})").find("bad arguments for \"intercept\""), std::string::npos);
  EXPECT_NE(err(R"({"cmd":"intercept"})").find("bad arguments"), std::string::npos);
  // Deep nesting must not blow the stack.
  std::string deep(100000, '[');
  EXPECT_EQ(err(deep), "request is not valid JSON");
}

TEST(ControlRegistry, InvalidUtf8FromGuestIsReplaced) {
  CommandRegistry r;
  registry_with_tools(r);
  auto j = reply(r, R"({"cmd":"guest"})");
  EXPECT_TRUE(j["ok"].get<bool>());
  EXPECT_EQ(j["exe"].get<std::string>().substr(0, 5), "/bin/");
}

TEST(ControlRegistry, DuplicateNamesRefused) {
  CommandRegistry r;
  EXPECT_FALSE(r.add("help", "again", [](const Json&) -> Expected<Json> { return Json{}; }));
  EXPECT_TRUE(r.add("x", "", [](const Json&) -> Expected<Json> { return Json{}; }));
  EXPECT_FALSE(r.add("x", "", [](const Json&) -> Expected<Json> { return Json{}; }));
  r.remove("x");
  EXPECT_TRUE(r.add("x", "", [](const Json&) -> Expected<Json> { return Json{}; }));
}

class ControlServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/gears-ctl-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir = tmpl;
    path = dir + "/vmm.sock";
    registry_with_tools(reg);
  }
  void TearDown() override {
    server.reset();
    unlink(path.c_str());
    rmdir((dir + "/sub").c_str());
    rmdir(dir.c_str());
  }
  void start(ServerLimits limits = {}) {
    auto s = ControlServer::start(path, reg, limits);
    ASSERT_TRUE(s) << s.error().what();
    server = std::move(*s);
  }
  // A raw client for misbehaving on purpose.
  int raw_connect() {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    EXPECT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    return fd;
  }
  static void send_all(int fd, const std::string& s) {
    for (size_t off = 0; off < s.size();) {
      ssize_t n = send(fd, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += static_cast<size_t>(n);
    }
  }
  // Reads until `lines` newlines or EOF.
  static std::string read_lines(int fd, int lines) {
    std::string out;
    char buf[4096];
    while (lines > 0) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 10000) <= 0) break;
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      for (ssize_t i = 0; i < n; ++i)
        if (buf[i] == '\n') --lines;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  // EOF, or ECONNRESET: a UNIX socket closed with unread input resets its peer.
  static bool closed_by_peer(int fd) {
    char c;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 10000) <= 0) return false;
    ssize_t n = recv(fd, &c, 1, 0);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }

  std::string dir, path;
  CommandRegistry reg;
  std::unique_ptr<ControlServer> server;
};

TEST_F(ControlServerTest, SocketIsOwnerOnlyAndRoundTrips) {
  start();
  struct stat st{};
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto r = call(path, {{"cmd", "intercept"}, {"nr", 39}, {"on", true}});
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ((*r)["nr"], 39);
  auto e = call(path, {{"cmd", "nope"}});
  ASSERT_TRUE(e);
  EXPECT_FALSE((*e)["ok"].get<bool>());
}

TEST_F(ControlServerTest, CreatesPrivateDirAndRefusesOpenOne) {
  path = dir + "/sub/vmm.sock";
  start();
  struct stat st{};
  ASSERT_EQ(stat((dir + "/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  server.reset();
  chmod((dir + "/sub").c_str(), 0755);
  auto s = ControlServer::start(path, reg);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("is not private (mode 0755"), std::string::npos) << s.error().message;
}

TEST_F(ControlServerTest, LiveSocketIsNotStolenStaleOneIsReplaced) {
  start();
  auto second = ControlServer::start(path, reg);
  ASSERT_FALSE(second);
  EXPECT_NE(second.error().message.find("already listening"), std::string::npos);
  // A stale socket file (nobody listening): bind one and close it without unlinking.
  server.reset();
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strcpy(a.sun_path, path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  close(fd);
  start();
  EXPECT_TRUE(call(path, {{"cmd", "help"}}));
}

TEST_F(ControlServerTest, RegularFileAtPathIsNotReplaced) {
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fclose(f);
  auto s = ControlServer::start(path, reg);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("is not a socket"), std::string::npos);
}

TEST_F(ControlServerTest, GarbageAndPipelinedRequests) {
  start();
  int fd = raw_connect();
  send_all(fd, "not json\n\n{\"cmd\":\"scalar\"}\r\n{\"cmd\":\n{\"cmd\":\"echo\",\"x\":1}\n");
  std::string out = read_lines(fd, 4);
  close(fd);
  std::vector<Json> replies;
  size_t start_at = 0;
  for (size_t nl; (nl = out.find('\n', start_at)) != std::string::npos; start_at = nl + 1)
    replies.push_back(Json::parse(out.substr(start_at, nl - start_at)));
  ASSERT_EQ(replies.size(), 4u) << out;
  EXPECT_EQ(replies[0]["error"], "request is not valid JSON");
  EXPECT_EQ(replies[1]["result"], 42);
  EXPECT_EQ(replies[2]["error"], "request is not valid JSON");
  EXPECT_EQ(replies[3]["echo"]["x"], 1);
}

TEST_F(ControlServerTest, OversizeLineGetsErrorAndClose) {
  ServerLimits limits;
  limits.max_line = 1024;
  start(limits);
  int fd = raw_connect();
  send_all(fd, std::string(5000, 'x'));  // no newline at all
  std::string out = read_lines(fd, 1);
  EXPECT_NE(out.find("request longer than 1024 bytes"), std::string::npos) << out;
  EXPECT_TRUE(closed_by_peer(fd));
  close(fd);
  // A long line with its newline, in one write.
  fd = raw_connect();
  send_all(fd, std::string(2000, ' ') + "\n");
  out = read_lines(fd, 1);
  EXPECT_NE(out.find("request longer than"), std::string::npos);
  close(fd);
  // The server still serves others.
  EXPECT_TRUE(call(path, {{"cmd", "help"}}));
}

TEST_F(ControlServerTest, VanishingClientsDoNotHurt) {
  start();
  for (int i = 0; i < 50; ++i) {
    int fd = raw_connect();
    if (i % 2) send_all(fd, "{\"cmd\":\"help\"}\n");  // and leave before the reply
    close(fd);
  }
  // A client that sends many requests and never reads: dropped at the backlog cap.
  int hog = raw_connect();
  std::string many;
  for (int i = 0; i < 2000; ++i) many += "{\"cmd\":\"help\"}\n";
  send_all(hog, many);
  auto r = call(path, {{"cmd", "echo"}});
  ASSERT_TRUE(r) << r.error().what();
  close(hog);
}

TEST_F(ControlServerTest, ClientErrorsAreOneLine) {
  auto r = call(path, {{"cmd", "help"}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().what().rfind("no gears-vmm is listening on " + path, 0), 0u) << r.error().what();
  EXPECT_EQ(r.error().what().find('\n'), std::string::npos);
}

TEST_F(ControlServerTest, TooManyClients) {
  ServerLimits limits;
  limits.max_clients = 2;
  start(limits);
  int a = raw_connect(), b = raw_connect();
  // Make sure both are accepted before the third arrives.
  send_all(a, "{\"cmd\":\"help\"}\n");
  send_all(b, "{\"cmd\":\"help\"}\n");
  read_lines(a, 1);
  read_lines(b, 1);
  auto r = call(path, {{"cmd", "help"}});
  ASSERT_TRUE(r);
  EXPECT_NE((*r)["error"].get<std::string>().find("too many control clients"), std::string::npos);
  close(a);
  close(b);
}

TEST(SocketPath, DefaultsAndDirs) {
  EXPECT_EQ(socket_dir("/run/user/1/gears/vmm.sock"), "/run/user/1/gears");
  EXPECT_EQ(socket_dir("vmm.sock"), ".");
  EXPECT_EQ(socket_dir("/vmm.sock"), "/");
  EXPECT_FALSE(default_socket_path().empty());
}

}  // namespace
}  // namespace gears::vmm::control
