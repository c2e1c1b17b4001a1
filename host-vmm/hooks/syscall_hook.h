// The KVM side of selective syscall exiting and hypercalls (doc/toolset.md, "How it is wired"):
//   - traps guest reads/writes of MSR_LSTAR (KVM_CAP_X86_USER_SPACE_MSR + an MSR filter, set
//     before the first KVM_RUN); at a vCPU's boot-time LSTAR write it records the guest's entry,
//     maps the stub once (syscall_exit::find_stub_slot/map_stub/generate_stub) and points that
//     vCPU's LSTAR at it with KVM_SET_MSRS on its own thread; guest reads see their own value;
//   - the stub's private port (0xE7): a selected syscall goes to SyscallExitTool::on_stub_exit,
//     a user hypercall (EAX == GEARS_SYSCALL_NR) to the HypercallDispatcher, finished by a real
//     `sysretq` the VMM keeps in the stub page (RIP moved there; no segment-register writes);
//   - the kernel doorbell (OUT to GEARS_DOORBELL_PORT) to the dispatcher.
// Registers come from kvm_run sync regs (REGS + SREGS requested on every vCPU); only general
// registers go back (kvm_dirty_regs = REGS). Everything here runs on the vCPU thread that took the exit.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "control/command_registry.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "gears/expected.h"
#include "hooks/return_trap.h"
#include "tools/hypercall/dispatcher.h"
#include "tools/inject/borrow_engine.h"
#include "tools/syscall_exit/stub_codegen.h"
#include "tools/syscall_exit/syscall_exit_tool.h"

namespace gears::vmm::hooks {

inline constexpr uint32_t kMsrLstar = 0xC0000082;

struct SyscallHookConfig {
  bool syscall_exit = true;  // false: hypercall doorbell only, LSTAR untouched
  // Armed: the stub is mapped and LSTAR points at it from the guest's first LSTAR write.
  // Disarmed: the guest is left untouched until set_armed(true) (deploy, gearsctl) maps the
  // stub and points LSTAR at it at run time.
  bool armed_at_boot = true;
  bool returns = false;      // syscall exit events (ReturnTrap)
  // Low reserved memory (e820 reserved [0x9fc00, 1 MiB), always in the kernel's direct map):
  // the stub's page table and the stub page itself.
  uint64_t stub_pt_gpa = 0xf0000;
  uint64_t stub_gpa = 0xf1000;
  // The guest command line and CPU vendor decide whether the kernel runs with PTI (the stub is
  // not mapped in PTI's user page tables: a PTI guest would triple-fault at its first syscall).
  std::string guest_cmdline;
  bool cpu_is_amd = true;
};

// True when the guest kernel will (probably) enable page-table isolation: Intel CPUs without
// RDCL_NO get it unless "pti=off", "nopti" or "mitigations=off" is on the command line; AMD
// does not need it unless "pti=on".
bool guest_pti_likely(const std::string& cmdline, bool cpu_is_amd);

class SyscallHook {
 public:
  // Registers the MSR filter and the PIO observers on `vm` and asks every vCPU for synced
  // sregs. Must run before Machine::run(). `tool`, `hypercalls` and `vm` must outlive the run.
  static Expected<std::unique_ptr<SyscallHook>> install(Vm& vm, std::vector<std::unique_ptr<Vcpu>>& vcpus,
                                                        syscall_exit::SyscallExitTool& tool,
                                                        hypercall::HypercallDispatcher& hypercalls,
                                                        SyscallHookConfig config);

  // The "syscall_hook" stats section: where the stub is, per-vCPU state, exit counters.
  control::Json stats() const;
  // Arms (LSTAR -> stub) or disarms (LSTAR -> the guest's own entry) the stub on every vCPU
  // at run time, each with KVM_SET_MSRS on its own thread (Vcpu::run_on_thread). For the
  // control thread; waits at most a few seconds per vCPU.
  Expected<control::Json> set_armed(bool on);
  bool stub_installed() const { return stub_gva_.load() != 0; }
  bool armed() const { return armed_.load(); }
  // The injection engine, consulted first at every stub exit while it is busy. Set before
  // the guest runs; `engine` must outlive the run.
  void set_engine(inject::BorrowEngine* engine) { engine_ = engine; }
  // The stub's exit-all flag (every syscall exits): the engine's switch.
  void set_exit_all(bool on);
  // Syscall exit events (hardware breakpoints at the user return address); null when the stub
  // is off. Its stats are the "syscall_returns" section.
  ReturnTrap* returns() { return returns_.get(); }

 private:
  SyscallHook(Vm& vm, syscall_exit::SyscallExitTool& tool, hypercall::HypercallDispatcher& hc, SyscallHookConfig cfg,
              size_t vcpus);
  bool on_lstar_write(Vcpu& v, uint64_t value);
  bool on_lstar_read(Vcpu& v, uint64_t& value);
  bool on_stub_port(Vcpu& v, kvm_run& run);
  // The engine's part of a stub exit; true when the exit is fully handled.
  bool engine_exit(Vcpu& v, kvm_run& run);
  bool on_doorbell(Vcpu& v, kvm_run& run);
  // Maps the stub on the first LSTAR write; returns the stub address for `entry`.
  Expected<uint64_t> ensure_stub(Vcpu& v, uint64_t entry);
  void user_hypercall(Vcpu& v, kvm_run& run);
  void log(const std::string& line);

  Vm& vm_;
  std::vector<std::unique_ptr<Vcpu>>* vcpus_ = nullptr;
  std::atomic<bool> armed_{true};  // a later boot-time LSTAR write follows the current choice
  syscall_exit::SyscallExitTool& tool_;
  hypercall::HypercallDispatcher& hypercalls_;
  SyscallHookConfig cfg_;

  mutable std::mutex mu_;           // stub installation and status text
  std::string status_ = "waiting for the guest's LSTAR write";
  syscall_exit::Stub stub_;
  uint64_t original_entry_ = 0;
  std::atomic<uint64_t> stub_gva_{0};
  uint32_t exit_offset_ = 0, resume_offset_ = 0;  // copies for the lock-free exit path

  std::unique_ptr<std::atomic<uint64_t>[]> guest_lstar_;  // per vCPU: the value the guest wrote
  std::unique_ptr<std::atomic<bool>[]> hooked_;           // per vCPU: LSTAR points at the stub
  size_t nvcpus_;
  std::unique_ptr<ReturnTrap> returns_;
  inject::BorrowEngine* engine_ = nullptr;
  size_t xsave2_size_ = 0;  // KVM_CAP_XSAVE2's image size, 0 without it
  std::atomic<uint64_t> engine_exits_{0}, passed_through_{0};
  std::atomic<uint64_t> stub_exits_{0}, user_hypercalls_{0}, kernel_hypercalls_{0}, refused_sysret_{0},
      foreign_port_exits_{0};
};

}  // namespace gears::vmm::hooks
