// One KVM virtual machine: its fd, guest RAM slots, the in-kernel interrupt controllers and
// PIT, the PIO/MMIO buses, and the hook points GEARS tools attach to (MSR filter, PIO
// observers). vCPUs live in vcpu.h; composing a bootable machine is builder.h's job.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "core/guest_memory.h"
#include "core/io_bus.h"
#include "core/kvm_system.h"
#include "gears/expected.h"

namespace gears::vmm {

class Vcpu;

// Fixed addresses KVM needs on Intel for real-mode emulation; they must not overlap RAM that
// the guest uses (they sit in the 32-bit hole, below the IOAPIC).
inline constexpr uint64_t kIdentityMapAddr = 0xfeffc000ULL;
inline constexpr uint64_t kTssAddr = 0xfeffd000ULL;  // 3 pages

// An MSR range for KVM_X86_SET_MSR_FILTER; accesses to MSRs in a range are denied by KVM and,
// with user-space MSR exits enabled, reported to the vCPU's MsrHandler instead.
struct MsrFilterRange {
  uint32_t base = 0;
  uint32_t count = 1;
  bool reads = true;
  bool writes = true;
};

// Answers an MSR exit on the vCPU's thread. Return false to inject #GP into the guest.
struct MsrHandler {
  std::function<bool(Vcpu&, uint32_t msr, uint64_t& value)> read;
  std::function<bool(Vcpu&, uint32_t msr, uint64_t value)> write;
};

// Sees a port-I/O exit before the bus does (a GEARS doorbell). Return true when handled: the
// bus is then skipped.
struct PioObserver {
  uint16_t port = 0;
  std::function<bool(Vcpu&, kvm_run&)> on_exit;
};

class Vm {
 public:
  // Creates the VM, registers `mem`'s regions as memory slots, creates IRQCHIP + PIT2.
  static Expected<std::unique_ptr<Vm>> create(const KvmSystem& kvm, GuestMemory& mem);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  int fd() const { return fd_; }
  const KvmSystem& kvm() const { return kvm_; }
  GuestMemory& memory() { return mem_; }
  IoBus& pio() { return pio_; }
  IoBus& mmio() { return mmio_; }

  // Maps host memory that is not guest RAM (a region shared with other VMs, shm/) at `gpa`
  // as one more KVM memory slot. `host` must stay mapped for the VM's lifetime.
  Expected<void> add_memory_slot(uint64_t gpa, uint64_t size, uint8_t* host);

  // The interrupt line for `gsi` (KVM_IRQ_LINE on the in-kernel IOAPIC/PIC).
  std::shared_ptr<IrqLine> irq_line(uint32_t gsi);

  // --- GEARS hook points; all must be set up before the first KVM_RUN. ---
  // Enables KVM_CAP_X86_USER_SPACE_MSR (filter reason) and installs `ranges` as the filter.
  Expected<void> set_msr_filter(const std::vector<MsrFilterRange>& ranges, MsrHandler handler);
  const MsrHandler& msr_handler() const { return msr_handler_; }
  void add_pio_observer(PioObserver obs) { pio_observers_.push_back(std::move(obs)); }
  const std::vector<PioObserver>& pio_observers() const { return pio_observers_; }
  // KVM_EXIT_DEBUG (a debug trap the VMM armed with KVM_SET_GUEST_DEBUG). Return true when
  // handled; without a handler (or when it returns false) the run stops with a report.
  void set_debug_handler(std::function<bool(Vcpu&, kvm_run&)> h) { debug_handler_ = std::move(h); }
  const std::function<bool(Vcpu&, kvm_run&)>& debug_handler() const { return debug_handler_; }

 private:
  Vm(const KvmSystem& kvm, GuestMemory& mem) : kvm_(kvm), mem_(mem) {}

  const KvmSystem& kvm_;
  GuestMemory& mem_;
  int fd_ = -1;
  uint32_t next_slot_ = 0;
  IoBus pio_{"pio"};
  IoBus mmio_{"mmio"};
  MsrHandler msr_handler_;
  std::vector<PioObserver> pio_observers_;
  std::function<bool(Vcpu&, kvm_run&)> debug_handler_;
};

}  // namespace gears::vmm
