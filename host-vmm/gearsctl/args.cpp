#include "gearsctl/args.h"

#include <charconv>

namespace gears::ctl {

using vmm::control::Json;

const char* usage() {
  return "usage: gearsctl [--socket PATH] [--json] [--timeout SEC] COMMAND [ARGS]\n"
         "commands:\n"
         "  processes              guest processes seen by the VMM (Antfarm-style tracking)\n"
         "  syscalls               selective syscall exiting: intercepted numbers and counts\n"
         "  intercept NR on|off    start/stop exiting on syscall NR (or 'all')\n"
         "  stats                  VMM counters\n"
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
