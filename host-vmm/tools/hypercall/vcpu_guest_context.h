// The concrete GuestContext (sdk/include/gears/vmm/service_host.h) a service's VMM half gets
// during a hypercall or syscall callback: one stopped vCPU's registers and its address space.
//
// Guest memory is reached through the page walk with the caller's privilege: a hypercall from
// guest user space may only make the VMM touch memory that process could touch itself
// (user pages, write only where writable), so a process cannot use a service to read the
// kernel. Kernel-origin calls get kernel access (honouring CR0.WP).
#pragma once

#include "core/guest_memory.h"
#include "gears/vmm/service_host.h"
#include "tools/introspect/address_space.h"
#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm::hypercall {

class VcpuGuestContext final : public GuestContext {
 public:
  VcpuGuestContext(GuestMemory& mem, VcpuRegs& regs, int vcpu, Origin origin)
      : as_(mem, regs.cr3, (regs.cr0 & VcpuRegs::kCr0Wp) != 0), regs_(regs), vcpu_(vcpu), origin_(origin) {}

  Expected<void> read(std::uint64_t gva, void* dst, std::size_t len) override;
  Expected<void> write(std::uint64_t gva, const void* src, std::size_t len) override;
  Expected<std::string> read_string(std::uint64_t gva, std::size_t max) override;
  std::uint64_t reg(Reg r) const override;
  void set_reg(Reg r, std::uint64_t value) override;
  int vcpu() const override { return vcpu_; }
  Origin origin() const override { return origin_; }

 private:
  introspect::Access read_access() const;
  introspect::Access write_access() const;
  uint64_t& slot(Reg r) const;

  introspect::AddressSpace as_;
  VcpuRegs& regs_;
  int vcpu_;
  Origin origin_;
};

}  // namespace gears::vmm::hypercall
