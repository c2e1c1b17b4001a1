#include "gearsctl/args.h"

#include <charconv>
#include <filesystem>

namespace gears::ctl {

using vmm::control::Json;

const char* usage() {
  return "usage: gearsctl [--socket PATH] [--json] [--timeout SEC] COMMAND [ARGS]\n"
         "commands:\n"
         "  processes              guest processes seen by the VMM (Antfarm-style tracking)\n"
         "  syscalls               selective syscall exiting: intercepted numbers and counts\n"
         "  intercept NR on|off    start/stop exiting on syscall NR (or 'all')\n"
         "  stats                  VMM counters\n"
         "  deploy BUNDLE [--pid N|--exe GLOB|--library NAME] [--timeout MS]\n"
         "                         deploy a service bundle into the running guest (default targets:\n"
         "                         the manifest's programs)\n"
         "  undeploy NAME [--timeout MS]  remove a deployed service\n"
         "  services               deployed services, their halves and injected processes\n"
         "  help                   the commands this gears-vmm answers\n"
         "  call JSON              send a raw request, e.g. call '{\"cmd\":\"stats\"}'\n"
         "  NAME [key=value ...]   any other command the VMM registered\n"
         "socket: --socket, else $GEARS_SOCKET, else $XDG_RUNTIME_DIR/gears/vmm.sock\n";
}

namespace {
Expected<bool> on_off(const std::string& s) {
  if (s == "on" || s == "1" || s == "true") return true;
  if (s == "off" || s == "0" || s == "false") return false;
  return fail("expected on or off, got \"" + s + "\"");
}
Expected<int64_t> positive(const std::string& what, const std::string& v, int64_t max) {
  int64_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n <= 0 || n > max)
    return fail(what + " wants a whole number 1.." + std::to_string(max) + ", got \"" + v + "\"");
  return n;
}

// The VMM may spend the guest timeout on the deploy and again on each step of undoing it.
void wait_for_guest(Invocation& inv, int64_t guest_timeout_ms) {
  if (!inv.timeout_set) inv.timeout_ms = static_cast<int>(guest_timeout_ms * 4 + 5'000);
}

constexpr int64_t kGuestTimeoutMs = 30'000, kMaxGuestTimeoutMs = 600'000;

// deploy BUNDLE [--pid N|--exe GLOB|--library NAME] [--timeout MS]
Expected<void> parse_deploy(Invocation& inv, const std::vector<std::string>& rest) {
  inv.request = {{"cmd", "deploy"}};
  std::string bundle;
  int64_t timeout = kGuestTimeoutMs;
  int targets = 0;
  for (size_t i = 0; i < rest.size(); ++i) {
    const std::string& a = rest[i];
    if (a == "--pid" || a == "--exe" || a == "--library" || a == "--timeout") {
      if (i + 1 >= rest.size()) return fail(a + " needs a value");
      const std::string& v = rest[++i];
      if (a == "--timeout") {
        auto ms = positive("--timeout", v, kMaxGuestTimeoutMs);
        if (!ms) return fail(ms.error());
        timeout = *ms;
        inv.request["timeout_ms"] = *ms;
        continue;
      }
      ++targets;
      if (a == "--pid") {
        auto pid = positive("--pid", v, INT32_MAX);
        if (!pid) return fail(pid.error());
        inv.request["pid"] = *pid;
      } else {
        inv.request[a.substr(2)] = v;
      }
    } else if (a.size() > 1 && a[0] == '-') {
      return fail("deploy: unknown option " + a);
    } else if (bundle.empty()) {
      bundle = a;
    } else {
      return fail("deploy takes one bundle, got \"" + bundle + "\" and \"" + a + "\"");
    }
  }
  if (bundle.empty()) return fail("usage: gearsctl deploy BUNDLE [--pid N|--exe GLOB|--library NAME] [--timeout MS]");
  if (targets > 1) return fail("deploy: give at most one of --pid, --exe, --library");
  // gears-vmm reads the file itself, from its own working directory: send an absolute path.
  std::error_code ec;
  auto abs = std::filesystem::absolute(bundle, ec);
  if (ec) return fail("cannot make \"" + bundle + "\" absolute: " + ec.message());
  inv.request["bundle"] = abs.lexically_normal().string();
  wait_for_guest(inv, timeout);
  return {};
}

// undeploy NAME [--timeout MS]
Expected<void> parse_undeploy(Invocation& inv, const std::vector<std::string>& rest) {
  inv.request = {{"cmd", "undeploy"}};
  int64_t timeout = kGuestTimeoutMs;
  std::string name;
  for (size_t i = 0; i < rest.size(); ++i) {
    if (rest[i] == "--timeout") {
      if (i + 1 >= rest.size()) return fail("--timeout needs a value");
      auto ms = positive("--timeout", rest[++i], kMaxGuestTimeoutMs);
      if (!ms) return fail(ms.error());
      timeout = *ms;
      inv.request["timeout_ms"] = *ms;
    } else if (name.empty() && !rest[i].empty() && rest[i][0] != '-') {
      name = rest[i];
    } else {
      return fail("usage: gearsctl undeploy NAME [--timeout MS]");
    }
  }
  if (name.empty()) return fail("usage: gearsctl undeploy NAME [--timeout MS]");
  inv.request["service"] = name;
  wait_for_guest(inv, timeout);
  return {};
}

}  // namespace

Expected<Invocation> parse_args(const std::vector<std::string>& args) {
  Invocation inv;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--json") {
      inv.json = true;
    } else if (a == "-h" || a == "--help") {
      inv.help = true;
      return inv;
    } else if (a == "--socket" || a == "--timeout") {
      if (i + 1 >= args.size()) return fail(a + " needs a value");
      const std::string& v = args[++i];
      if (a == "--socket") {
        inv.socket = v;
      } else {
        int sec = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), sec);
        if (ec != std::errc() || p != v.data() + v.size() || sec <= 0 || sec > 3600)
          return fail("--timeout wants whole seconds (1..3600), got \"" + v + "\"");
        inv.timeout_ms = sec * 1000;
        inv.timeout_set = true;
      }
    } else if (a.rfind("--socket=", 0) == 0) {
      inv.socket = a.substr(9);
    } else if (a.size() > 1 && a[0] == '-') {
      return fail("unknown option " + a);
    } else {
      break;
    }
  }
  if (i >= args.size()) return fail("no command given");
  const std::string cmd = args[i++];
  std::vector<std::string> rest(args.begin() + static_cast<long>(i), args.end());

  if (cmd == "intercept") {
    if (rest.size() != 2) return fail("usage: gearsctl intercept NR|all on|off");
    auto on = on_off(rest[1]);
    if (!on) return fail(on.error());
    inv.request = {{"cmd", "intercept"}, {"on", *on}};
    if (rest[0] == "all") {
      inv.request["nr"] = "all";
    } else {
      long nr = -1;
      auto [p, ec] = std::from_chars(rest[0].data(), rest[0].data() + rest[0].size(), nr);
      if (ec != std::errc() || p != rest[0].data() + rest[0].size() || nr < 0)
        return fail("syscall number must be a non-negative integer or 'all', got \"" + rest[0] + "\"");
      inv.request["nr"] = nr;
    }
    return inv;
  }
  if (cmd == "deploy") {
    GEARS_TRY(parse_deploy(inv, rest));
    return inv;
  }
  if (cmd == "undeploy") {
    GEARS_TRY(parse_undeploy(inv, rest));
    return inv;
  }
  if (cmd == "services" && !rest.empty()) return fail("usage: gearsctl services");
  if (cmd == "call") {
    if (rest.size() != 1) return fail("usage: gearsctl call '{\"cmd\":...}'");
    Json j = Json::parse(rest[0], nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("cmd"))
      return fail("call wants a JSON object with a \"cmd\", got " + rest[0]);
    inv.request = std::move(j);
    return inv;
  }
  inv.request = {{"cmd", cmd}};
  for (const std::string& kv : rest) {
    auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) return fail("argument \"" + kv + "\" is not key=value");
    std::string key = kv.substr(0, eq), val = kv.substr(eq + 1);
    Json v = Json::parse(val, nullptr, false);
    inv.request[key] = v.is_discarded() ? Json(val) : v;  // 39 -> number, true -> bool, ls -> "ls"
  }
  return inv;
}

}  // namespace gears::ctl
