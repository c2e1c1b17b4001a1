// Selective syscall exiting, the part that needs no KVM: which numbers exit (the bitmap, with
// per-tool reference counts so `gearsctl intercept 59 off` cannot switch off what proctrack
// needs), the decoding of a stub exit into a SyscallEvent, fan-out to subscribed tools, and
// the control commands. The KVM part (LSTAR trap, mapping the stub page) is designed in
// doc/toolset.md and lives with the vCPU layer.
//
//   {"cmd":"syscalls"}                       -> {"installed":bool,"count":N,"exits_total":N,
//                                                "syscalls":[{nr,intercept,user,tools,exits}]}
//                                                (numbers intercepted or with exits > 0)
//   {"cmd":"intercept","nr":N|"all","on":bool[,"returns":bool]} -> {"nr":..,"on":..}
//                                                ("returns": also deliver the call's return,
//                                                 SyscallReturn; the KVM glue catches it)
//   stats section "syscall_exit": {"exits_total","hypercalls","selected"}
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "control/command_registry.h"
#include "gears/expected.h"
#include "tools/introspect/vcpu_regs.h"
#include "tools/syscall_exit/syscall_bitmap.h"

namespace gears::vmm::syscall_exit {

// One syscall entry caught by the stub, as tools see it.
struct SyscallEvent {
  uint32_t vcpu = 0;
  uint64_t cr3 = 0;
  uint32_t nr = 0;                  // EAX, as the kernel dispatches it
  std::array<uint64_t, 6> args{};   // RDI RSI RDX R10 R8 R9
  uint64_t user_rip = 0;            // RCX: the instruction after the user's SYSCALL
  uint64_t time_ns = 0;
};

// The return of a syscall whose return was wanted (see ReturnTable): the entry's number and
// arguments with the value RAX held when the thread came back to user mode.
struct SyscallReturn {
  uint32_t vcpu = 0;        // where the return was seen
  uint32_t entry_vcpu = 0;  // where the entry was seen (a blocked thread may move)
  uint64_t cr3 = 0;         // the returning address space (a fork child's own)
  uint32_t nr = 0;
  std::array<uint64_t, 6> args{};
  int64_t ret = 0;
  uint64_t user_rip = 0;
  uint64_t entry_time_ns = 0;
  uint64_t time_ns = 0;
  bool child = false;  // a fork/vfork child's first return (ret 0), not the caller's
};

class SyscallExitTool {
 public:
  explicit SyscallExitTool(uint32_t count = 512);

  uint32_t count() const { return count_; }

  // Moves the selection into the stub page's bitmap bytes (the VMM's view of guest memory) and
  // keeps using them from then on. Called once the stub is installed.
  Expected<void> attach(std::span<uint8_t> guest_bitmap);
  bool attached() const;

  // Selection: a number exits when the user asked for it or any tool holds it.
  Expected<void> set_user(uint32_t nr, bool on);
  void set_user_all(bool on);
  Expected<void> acquire(uint32_t nr);  // a tool needs nr (counted)
  void release(uint32_t nr);
  bool selected(uint32_t nr) const;

  // Subscribers run on the vCPU thread that took the exit, in registration order; they may
  // change registers (execve argument injection does) and the VMM writes them back.
  using Listener = std::function<void(const SyscallEvent&, VcpuRegs&)>;
  void subscribe(Listener listener);

  // The vCPU loop calls this for a KVM_EXIT_IO on the stub's port with synced registers.
  void on_stub_exit(uint32_t vcpu, VcpuRegs& regs, uint64_t time_ns);

  // Returns: a number's return is delivered when the user asked (`intercept ... returns`) or a
  // tool holds it (counted). Only selected numbers exit at entry, so only they can return.
  Expected<void> set_user_returns(uint32_t nr, bool on);
  Expected<void> acquire_returns(uint32_t nr);
  void release_returns(uint32_t nr);
  bool wants_return(uint32_t nr) const {  // lock-free: the stub exit path asks it
    return nr < count_ && ret_on_[nr].load(std::memory_order_relaxed);
  }
  using ReturnListener = std::function<void(const SyscallReturn&)>;
  void subscribe_returns(ReturnListener listener);  // before the guest runs
  void on_return(const SyscallReturn& ret);         // from the KVM glue, on the vCPU thread
  uint64_t return_exits(uint32_t nr) const;

  uint64_t exits(uint32_t nr) const;
  uint64_t exits_total() const { return total_.load(std::memory_order_relaxed); }

  Expected<void> register_commands(control::CommandRegistry& registry);

 private:
  void update_bit(uint32_t nr);  // under mu_

  const uint32_t count_;
  mutable std::mutex mu_;
  std::vector<uint8_t> own_bits_;   // before attach()
  std::span<uint8_t> bits_;
  bool attached_ = false;
  std::vector<bool> user_;
  std::vector<uint16_t> refs_;
  std::unique_ptr<std::atomic<uint64_t>[]> exits_;
  std::atomic<uint64_t> total_{0};
  std::atomic<uint64_t> other_{0};  // exits for numbers outside the table (hypercall, x32)
  std::vector<Listener> listeners_;  // registered before the guest runs
  void update_returns(uint32_t nr);  // under mu_
  std::vector<bool> ret_user_;
  std::vector<uint16_t> ret_refs_;
  std::unique_ptr<std::atomic<bool>[]> ret_on_;
  std::unique_ptr<std::atomic<uint64_t>[]> ret_exits_;
  std::atomic<uint64_t> ret_total_{0};
  std::vector<ReturnListener> ret_listeners_;
};

}  // namespace gears::vmm::syscall_exit
