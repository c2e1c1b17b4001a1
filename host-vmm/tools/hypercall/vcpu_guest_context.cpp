#include "tools/hypercall/vcpu_guest_context.h"

namespace gears::vmm::hypercall {

using introspect::Access;

Access VcpuGuestContext::read_access() const {
  return origin_ == Origin::guest_user ? Access::user_read() : Access::kernel_read();
}
Access VcpuGuestContext::write_access() const {
  return origin_ == Origin::guest_user ? Access::user_write() : Access::kernel_write();
}

Expected<void> VcpuGuestContext::read(std::uint64_t gva, void* dst, std::size_t len) {
  return as_.read(gva, std::span(static_cast<uint8_t*>(dst), len), read_access());
}

Expected<void> VcpuGuestContext::write(std::uint64_t gva, const void* src, std::size_t len) {
  return as_.write(gva, std::span(static_cast<const uint8_t*>(src), len), write_access());
}

Expected<std::string> VcpuGuestContext::read_string(std::uint64_t gva, std::size_t max) {
  return as_.read_string(gva, max, read_access());
}

uint64_t& VcpuGuestContext::slot(Reg r) const {
  switch (r) {
    case Reg::rax: return regs_.rax;
    case Reg::rbx: return regs_.rbx;
    case Reg::rcx: return regs_.rcx;
    case Reg::rdx: return regs_.rdx;
    case Reg::rsi: return regs_.rsi;
    case Reg::rdi: return regs_.rdi;
    case Reg::rbp: return regs_.rbp;
    case Reg::rsp: return regs_.rsp;
    case Reg::r8: return regs_.r8;
    case Reg::r9: return regs_.r9;
    case Reg::r10: return regs_.r10;
    case Reg::r11: return regs_.r11;
    case Reg::r12: return regs_.r12;
    case Reg::r13: return regs_.r13;
    case Reg::r14: return regs_.r14;
    case Reg::r15: return regs_.r15;
    case Reg::rip: return regs_.rip;
    case Reg::rflags: return regs_.rflags;
  }
  return regs_.rax;  // unreachable for valid enumerators
}

std::uint64_t VcpuGuestContext::reg(Reg r) const { return slot(r); }
void VcpuGuestContext::set_reg(Reg r, std::uint64_t value) { slot(r) = value; }

}  // namespace gears::vmm::hypercall
