// gearsctl's command line -> one control request.
#pragma once

#include <string>
#include <vector>

#include "control/command_registry.h"
#include "gears/expected.h"

namespace gears::ctl {

struct Invocation {
  std::string socket;  // empty: control::default_socket_path()
  bool json = false;
  bool help = false;
  int timeout_ms = 10'000;
  bool timeout_set = false;  // --timeout given: commands that wait on the guest keep it
  vmm::control::Json request;  // {"cmd": ...}
};

// gearsctl [--socket PATH] [--json] [--timeout SEC] COMMAND [ARGS...]
//   processes | syscalls | stats | help
//   intercept NR|all on|off
//   deploy BUNDLE [--pid N|--exe GLOB|--library NAME] [--timeout MS]   (path made absolute)
//   undeploy NAME [--timeout MS] | services
//   call '{"cmd":...}'            a raw request
//   NAME [key=value ...]           any other command; values parsed as JSON when they are JSON
Expected<Invocation> parse_args(const std::vector<std::string>& args);

const char* usage();

}  // namespace gears::ctl
