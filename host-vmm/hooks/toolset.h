// The GEARS tools attached to one Machine (doc/toolset.md, "How it is wired"): the command
// registry and control socket, selective syscall exiting (SyscallHook + SyscallExitTool), the
// hypercall dispatcher with gears-vmm's own service-0 calls, process tracking fed by syscall
// exits, and the execve rules (environment and argument injection, one ExecRules store).
//
// Lifetime: attach() before Machine::run(); destroy after run() returned (the vCPU threads are
// joined then) and before the Machine (the control thread reads the stub bitmap in guest RAM).
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "builder.h"
#include "control/command_registry.h"
#include "control/control_server.h"
#include "deploy/service_manager.h"
#include "deploy/syscall_subscriptions.h"
#include "hooks/options.h"
#include "hooks/syscall_hook.h"
#include "tools/execve/exec_rules.h"
#include "tools/hypercall/dispatcher.h"
#include "tools/inject/borrow_engine.h"
#include "tools/inject/engine_injector.h"
#include "tools/proctrack/commands.h"
#include "tools/syscall_exit/syscall_exit_tool.h"

namespace gears::vmm::hooks {

class Toolset {
 public:
  static Expected<std::unique_ptr<Toolset>> attach(Machine& machine, const GearsOptions& options,
                                                   const std::string& guest_cmdline, bool cpu_is_amd,
                                                   const std::string& guest_release);
  ~Toolset();

  control::CommandRegistry& registry() { return registry_; }
  // Deploy's way into the guest (borrowed threads; doc/deploy.md).
  deploy::GuestInjector& injector() { return *injector_; }
  const std::string& socket_path() const;
  // The inferred processes (empty unless process tracking is on): disk statistics name them.
  proctrack::SharedTracker& tracker() { return tracker_; }
  bool tracking() const { return track_; }

 private:
  Toolset() = default;
  Expected<void> setup(Machine& machine, const GearsOptions& options, const std::string& guest_cmdline, bool cpu_is_amd,
                       const std::string& guest_release);
  void on_syscall(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs);
  void inject(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs);
  void record(const syscall_exit::SyscallEvent& ev);
  void on_return(const syscall_exit::SyscallReturn& ret);
  // Ends the tracked processes whose address space is gone (killed ones make no exit call):
  // at most every kReapEveryNs on syscall events, and before every query (doc/toolset.md).
  void reap(proctrack::ProcessTracker& t, uint64_t now_ns, bool force);
  static constexpr uint64_t kReapEveryNs = 20'000'000;
  Expected<void> setup_injection();
  Expected<void> select_execve(bool on);  // ExecRules' activation: execve/execveat exit while rules exist

  // The last kTraceDepth syscall events per vCPU (the "events" command): what the stub saw,
  // arguments included, without a log.
  static constexpr size_t kTraceDepth = 256;
  struct VcpuTrace {
    std::mutex mu;
    std::deque<syscall_exit::SyscallEvent> last;
    uint64_t count = 0;
    std::deque<syscall_exit::SyscallReturn> returns;  // the "returns" command
    uint64_t return_count = 0;
  };
  std::vector<std::unique_ptr<VcpuTrace>> traces_;

  control::CommandRegistry registry_;
  syscall_exit::SyscallExitTool sysexit_;
  // Every execve rule (options, control commands, deploy); selects 59/322 while it holds any.
  execve::ExecRules exec_rules_{[this](bool on) { return select_execve(on); }};
  deploy::SyscallSubscriptions subscriptions_{&sysexit_};  // services' syscall/process handlers
  hypercall::HypercallDispatcher hypercalls_;
  proctrack::SharedTracker tracker_;
  std::unique_ptr<SyscallHook> hook_;
  std::unique_ptr<control::ControlServer> server_;
  bool track_ = false;
  GuestMemory* mem_ = nullptr;
  uint64_t last_reap_ns_ = 0;  // under the tracker's lock
  std::unique_ptr<inject::BorrowEngine> engine_;
  std::unique_ptr<inject::EngineInjector> injector_;
  std::unique_ptr<deploy::ServiceManager> services_;  // last: uses the dispatcher, subscriptions, injector
  std::atomic<uint64_t> execs_seen_{0}, injected_{0}, inject_failed_{0}, env_rewritten_{0}, argv_rewritten_{0};
  std::string socket_path_;
};

}  // namespace gears::vmm::hooks
