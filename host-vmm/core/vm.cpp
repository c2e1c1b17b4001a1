#include "core/vm.h"

#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gears::vmm {

namespace {

class KvmIrqLine final : public IrqLine {
 public:
  KvmIrqLine(int vm_fd, uint32_t gsi) : vm_fd_(vm_fd), gsi_(gsi) {}
  void set_level(bool high) override {
    kvm_irq_level l{};
    l.irq = gsi_;
    l.level = high ? 1 : 0;
    // Fails only for a GSI outside the routing table, which the builder never hands out.
    (void)::ioctl(vm_fd_, KVM_IRQ_LINE, &l);
  }

 private:
  int vm_fd_;
  uint32_t gsi_;
};

}  // namespace

Expected<std::unique_ptr<Vm>> Vm::create(const KvmSystem& kvm, GuestMemory& mem) {
  std::unique_ptr<Vm> vm(new Vm(kvm, mem));
  vm->fd_ = ::ioctl(kvm.fd(), KVM_CREATE_VM, 0);
  if (vm->fd_ < 0) return fail_errno("KVM_CREATE_VM");
  // Intel needs these two before any vCPU exists; AMD ignores them.
  if (::ioctl(vm->fd_, KVM_SET_TSS_ADDR, kTssAddr) < 0) return fail_errno("KVM_SET_TSS_ADDR");
  uint64_t idmap = kIdentityMapAddr;
  if (kvm.check_extension(KVM_CAP_SET_IDENTITY_MAP_ADDR) > 0 &&
      ::ioctl(vm->fd_, KVM_SET_IDENTITY_MAP_ADDR, &idmap) < 0)
    return fail_errno("KVM_SET_IDENTITY_MAP_ADDR");
  for (const MemoryRegion& r : mem.regions()) GEARS_TRY(vm->add_memory_slot(r.gpa, r.size, r.host));
  if (::ioctl(vm->fd_, KVM_CREATE_IRQCHIP, 0) < 0) return fail_errno("KVM_CREATE_IRQCHIP");
  kvm_pit_config pit{};
  // The PIT speaker port (0x61) stays in gears-vmm; the in-kernel PIT takes 0x40-0x43.
  pit.flags = KVM_PIT_SPEAKER_DUMMY;
  if (::ioctl(vm->fd_, KVM_CREATE_PIT2, &pit) < 0) return fail_errno("KVM_CREATE_PIT2");
  return vm;
}

Vm::~Vm() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<void> Vm::add_memory_slot(uint64_t gpa, uint64_t size, uint8_t* host) {
  kvm_userspace_memory_region m{};
  m.slot = next_slot_;
  m.guest_phys_addr = gpa;
  m.memory_size = size;
  m.userspace_addr = reinterpret_cast<uint64_t>(host);
  if (::ioctl(fd_, KVM_SET_USER_MEMORY_REGION, &m) < 0) return fail_errno("KVM_SET_USER_MEMORY_REGION");
  ++next_slot_;
  return {};
}

std::shared_ptr<IrqLine> Vm::irq_line(uint32_t gsi) { return std::make_shared<KvmIrqLine>(fd_, gsi); }

Expected<void> Vm::set_msr_filter(const std::vector<MsrFilterRange>& ranges, MsrHandler handler) {
  if (ranges.size() > KVM_MSR_FILTER_MAX_RANGES) return fail("MSR filter: too many ranges");
  if (kvm_.check_extension(KVM_CAP_X86_USER_SPACE_MSR) <= 0 || kvm_.check_extension(KVM_CAP_X86_MSR_FILTER) <= 0)
    return fail("KVM lacks KVM_CAP_X86_USER_SPACE_MSR / KVM_CAP_X86_MSR_FILTER");
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_X86_USER_SPACE_MSR;
  cap.args[0] = KVM_MSR_EXIT_REASON_FILTER;
  if (::ioctl(fd_, KVM_ENABLE_CAP, &cap) < 0) return fail_errno("KVM_ENABLE_CAP(X86_USER_SPACE_MSR)");
  // A set bit in a range's bitmap *allows* the access; an all-zero bitmap denies the range.
  std::vector<std::vector<uint8_t>> bitmaps;
  kvm_msr_filter f{};
  f.flags = KVM_MSR_FILTER_DEFAULT_ALLOW;
  for (size_t i = 0; i < ranges.size(); ++i) {
    bitmaps.emplace_back((ranges[i].count + 7) / 8, 0);
    auto& r = f.ranges[i];
    r.flags = (ranges[i].reads ? KVM_MSR_FILTER_READ : 0) | (ranges[i].writes ? KVM_MSR_FILTER_WRITE : 0);
    r.nmsrs = ranges[i].count;
    r.base = ranges[i].base;
    r.bitmap = bitmaps.back().data();
  }
  if (::ioctl(fd_, KVM_X86_SET_MSR_FILTER, &f) < 0) return fail_errno("KVM_X86_SET_MSR_FILTER");
  msr_handler_ = std::move(handler);
  return {};
}

}  // namespace gears::vmm
