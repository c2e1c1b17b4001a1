// Syscall exit events on KVM (doc/toolset.md, "Syscall exit events"). At the stub's entry exit
// for a number whose return is wanted, the VMM sets TF in R11: SYSCALL saved the user RFLAGS
// there and the kernel restores them on the way back (it takes the IRET path when TF is set),
// so the thread raises a single-step #DB after its first user instruction after the syscall —
// on whichever vCPU it returns, however long it blocked, and in a fork child too (it inherits
// the saved flags). KVM reports the #DB as KVM_EXIT_DEBUG (KVM_SET_GUEST_DEBUG with
// KVM_GUESTDBG_USE_HW_BP and no breakpoint makes it forward every #DB); ReturnTable says whose
// return it is; the VMM clears TF and resumes. RAX is read after that one instruction: glibc's
// wrappers compare or move RAX first, so it is the return value (see the limits in the doc).
// Any other #DB (KVM's own NMI-window single steps on SVM reach us too) is dropped, never
// re-injected. While this is on, the guest's own hardware breakpoints and single-stepping do
// not work (KVM loads no guest DR7; a user single step matching no entry is cleared).
// Runs on the vCPU threads; one mutex around the table.
#pragma once

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "control/command_registry.h"
#include "core/vcpu.h"
#include "tools/introspect/vcpu_regs.h"
#include "tools/syscall_exit/return_table.h"
#include "tools/syscall_exit/syscall_exit_tool.h"

namespace gears::vmm::hooks {

class ReturnTrap {
 public:
  static constexpr uint64_t kRflagsTf = 1ULL << 8;

  explicit ReturnTrap(syscall_exit::SyscallExitTool& tool) : tool_(tool) {}

  // Makes KVM forward #DB to us on `v` (its thread, or before it runs).
  Expected<void> enable(Vcpu& v);
  // At a stub entry exit (registers as the stub saw them). Returns true when the caller must
  // set TF in the R11 it writes back.
  bool on_entry(Vcpu& v, const VcpuRegs& regs, uint64_t now_ns);
  // KVM_EXIT_DEBUG.
  bool on_debug(Vcpu& v, kvm_run& run, uint64_t now_ns);

  control::Json stats() const;

 private:
  syscall_exit::SyscallExitTool& tool_;
  mutable std::mutex mu_;
  syscall_exit::ReturnTable table_;
  std::atomic<bool> on_{true};
  std::atomic<uint64_t> debug_exits_{0}, swallowed_{0}, user_tf_{0}, enabled_vcpus_{0};
};

}  // namespace gears::vmm::hooks
