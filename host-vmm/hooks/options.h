// gears-vmm's GEARS options (the tools), taken out of argv before the VM options are parsed
// (config/vm_config.h knows nothing of them):
//   --control-socket PATH|none   the control socket (default control::default_socket_path())
//   --syscall-exit               hook MSR_LSTAR (the stub) even when no option below needs it
//   --no-syscall-exit            leave MSR_LSTAR alone (no stub; hypercall doorbell only)
//   --intercept N[,N...]         syscall numbers that exit from the start (like gearsctl intercept)
//   --returns N[,N...]           like --intercept, and each call's return is an event too
//                                (implies --syscall-returns)
//   --syscall-returns            syscall exit events (TF in the saved user flags; opt-in)
//   --track-processes            Antfarm-style process tracking from syscall exits
//   --inject-env GLOB:NAME=VALUE | GLOB:NAME+=VALUE
//                                at an execve whose filename matches GLOB (fnmatch, or the
//                                basename), set NAME (=) or prepend VALUE to a ':' list (+=)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/env_inject.h"

namespace gears::vmm::hooks {

struct EnvRule {
  std::string pattern;
  execve::EnvEdit edit;
};

struct GearsOptions {
  std::optional<std::string> control_socket;  // unset: the default path; "none": no socket
  // LSTAR points at the stub from boot: only when asked for or needed by a tool (in the KVM
  // test host a guest with the stub armed triple-faults in some runs: doc/toolset.md, "Known
  // problem"). Otherwise the stub is mapped but disarmed until deploy or gearsctl arms it.
  bool syscall_exit = false;
  bool stub_ready = true;  // false: --no-syscall-exit, LSTAR is never touched
  bool track_processes = false;
  std::vector<uint32_t> intercept;
  std::vector<uint32_t> returns;  // selected with their returns
  bool syscall_returns = false;   // ReturnTrap on (opt-in, doc/toolset.md "Syscall exit events")
  std::vector<EnvRule> inject_env;
};

// "GLOB:NAME=VALUE" / "GLOB:NAME+=VALUE".
Expected<EnvRule> parse_env_rule(const std::string& spec);

// Removes the GEARS options from `args` (argv without argv[0]) and returns them.
Expected<GearsOptions> take_gears_options(std::vector<std::string>& args);

// The --help section for these options.
const char* gears_usage();

}  // namespace gears::vmm::hooks
