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
//   --inject-argv GLOB:+ARG | GLOB:^ARG | GLOB:-ARG | GLOB:=OLD=>NEW
//                                at such an execve, append ARG, insert it after argv[0], remove
//                                every argument equal to ARG, or replace OLD by NEW
// (rule syntax: tools/execve/exec_rules.h; the rules go into the toolset's ExecRules)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/exec_rules.h"

namespace gears::vmm::hooks {

using execve::ArgvRule;
using execve::EnvRule;
// "GLOB:NAME=VALUE" / "GLOB:NAME+=VALUE"; "GLOB:+ARG" / "GLOB:^ARG" / "GLOB:-ARG" / "GLOB:=OLD=>NEW".
using execve::parse_argv_rule;
using execve::parse_env_rule;

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
  std::vector<ArgvRule> inject_argv;
};

// Removes the GEARS options from `args` (argv without argv[0]) and returns them.
Expected<GearsOptions> take_gears_options(std::vector<std::string>& args);

// The --help section for these options.
const char* gears_usage();

}  // namespace gears::vmm::hooks
