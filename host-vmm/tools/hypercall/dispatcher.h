// The hypercall dispatcher: decodes a guest's hypercall per sdk/include/gears/abi/hypercall.h
// and runs the registered handler with a GuestContext. Pure over registers and guest memory;
// the vCPU layer calls it at two exits:
//   guest kernel: KVM_EXIT_IO, OUT to GEARS_DOORBELL_PORT.  RAX = number, args RDI RSI R10 R8 R9 (RDX holds the port).
//   guest user:   the selective-exit stub's exit with EAX == GEARS_SYSCALL_NR.
//                 RDI = number, args RSI RDX R10 R8 R9.
// The result (>= 0, or -errno; -ENOSYS for an unknown number) is written to RAX. A user call
// never reaches the guest kernel: the vCPU layer finishes it as SYSRET would (RIP = RCX,
// RFLAGS = R11 with RF/VM cleared, CS/SS = user selectors, CPL 3) - see doc/toolset.md.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "control/command_registry.h"
#include "core/guest_memory.h"
#include "gears/expected.h"
#include "gears/vmm/service_host.h"
#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm::hypercall {

struct DispatchResult {
  int64_t result = 0;
  bool handled = false;          // a handler ran (false: unknown number, -ENOSYS)
  bool finish_as_sysret = false; // user origin: the vCPU layer must emulate SYSRET
};

class HypercallDispatcher {
 public:
  // Numbers are GEARS_HC_MAKE(service, function); service 0 is gears-vmm's own.
  Expected<void> add(uint32_t number, HypercallHandler handler);
  // Removes every number of one service (unloading it).
  void remove_service(uint16_t service_id);

  DispatchResult dispatch(Origin origin, int vcpu, VcpuRegs& regs, GuestMemory& mem);

  uint64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  uint64_t unknown() const { return unknown_.load(std::memory_order_relaxed); }
  Expected<void> register_commands(control::CommandRegistry& registry);  // stats section

 private:
  mutable std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<const HypercallHandler>> handlers_;
  std::atomic<uint64_t> calls_{0}, unknown_{0};
};

}  // namespace gears::vmm::hypercall
