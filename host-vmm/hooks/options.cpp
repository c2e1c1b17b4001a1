#include "hooks/options.h"

#include <cerrno>
#include <cstdlib>
#include <sstream>

namespace gears::vmm::hooks {

Expected<GearsOptions> take_gears_options(std::vector<std::string>& args) {
  GearsOptions o;
  std::vector<std::string> rest;
  bool explicit_exit = false, no_exit = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&]() -> Expected<std::string> {
      if (i + 1 >= args.size()) return fail(a + " needs a value");
      return args[++i];
    };
    if (a == "--control-socket") {
      auto v = value();
      if (!v) return fail(v.error());
      o.control_socket = *v;
    } else if (a == "--syscall-exit") {
      explicit_exit = true;
    } else if (a == "--no-syscall-exit") {
      no_exit = true;
    } else if (a == "--syscall-returns") {
      o.syscall_returns = true;
    } else if (a == "--track-processes") {
      o.track_processes = true;
    } else if (a == "--intercept" || a == "--returns") {
      auto v = value();
      if (!v) return fail(v.error());
      std::istringstream in(*v);
      std::string item;
      while (std::getline(in, item, ',')) {
        char* end = nullptr;
        errno = 0;
        long n = std::strtol(item.c_str(), &end, 0);
        if (item.empty() || *end != '\0' || errno != 0 || n < 0 || n > 100000)
          return fail(a + ": bad syscall number '" + item + "'");
        (a == "--returns" ? o.returns : o.intercept).push_back(static_cast<uint32_t>(n));
        if (a == "--returns") o.syscall_returns = true;
      }
    } else if (a == "--inject-env") {
      auto v = value();
      if (!v) return fail(v.error());
      auto r = parse_env_rule(*v);
      if (!r) return fail(a + ": " + r.error().message);
      o.inject_env.push_back(std::move(*r));
    } else if (a == "--inject-argv") {
      auto v = value();
      if (!v) return fail(v.error());
      auto r = parse_argv_rule(*v);
      if (!r) return fail(a + ": " + r.error().message);
      o.inject_argv.push_back(std::move(*r));
    } else {
      rest.push_back(a);
    }
  }
  args = std::move(rest);
  // The stub is installed when asked for, or when a tool needs syscall exits.
  const bool needed = !o.intercept.empty() || !o.returns.empty() || o.syscall_returns ||
                      o.track_processes || !o.inject_env.empty() || !o.inject_argv.empty();
  o.syscall_exit = !no_exit && (explicit_exit || needed);
  o.stub_ready = !no_exit;
  return o;
}

const char* gears_usage() {
  return "\nGEARS tools:\n"
         "  --control-socket PATH   control socket for gearsctl (default: $GEARS_SOCKET, else\n"
         "                          $XDG_RUNTIME_DIR/gears/vmm.sock, else /tmp/gears-<uid>/vmm.sock;\n"
         "                          'none': no socket)\n"
         "  --syscall-exit          point the guest's SYSCALL entry (MSR_LSTAR) at the selective-exit\n"
         "                          stub from boot (implied by the options below; otherwise the stub\n"
         "                          waits disarmed until `gearsctl deploy` or `syscall-hook` arms it)\n"
         "  --no-syscall-exit       never hook it (no deploy, no interception)\n"
         "  --intercept N[,N...]    syscall numbers that exit to gears-vmm from the start\n"
         "  --returns N[,N...]      as --intercept, and their returns (value in RAX) are events too\n"
         "  --syscall-returns       syscall exit events (implied by --returns; pids for --track-processes)\n"
         "  --track-processes       track guest processes from fork/exec/exit syscalls\n"
         "  --inject-env GLOB:NAME=VALUE, GLOB:NAME+=VALUE\n"
         "                          at an execve of a file matching GLOB (or its basename), set NAME\n"
         "                          or prepend VALUE to it with ':' (e.g. '*:LD_PRELOAD+=/lib/x.so')\n"
         "  --inject-argv GLOB:+ARG, GLOB:^ARG, GLOB:-ARG, GLOB:=OLD=>NEW\n"
         "                          at such an execve, append ARG, insert it right after argv[0],\n"
         "                          remove every argument equal to ARG, or replace OLD by NEW\n"
         "                          (e.g. 'gcc:+-g', 'curl:---verbose', 'app:=--fast=>--safe')\n";
}

}  // namespace gears::vmm::hooks
