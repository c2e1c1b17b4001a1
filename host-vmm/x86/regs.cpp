#include "x86/regs.h"

#include <sys/ioctl.h>

#include <array>
#include <cstring>

#include "x86/layout.h"
#include "x86/page_tables.h"

namespace gears::vmm::x86 {

namespace {

constexpr uint16_t kBootCs = 0x10, kBootDs = 0x18;
constexpr uint32_t kApicLvt0 = 0x350, kApicLvt1 = 0x360;
constexpr uint32_t kApicModeExtInt = 0x7 << 8, kApicModeNmi = 0x4 << 8;

kvm_segment flat_segment(uint16_t sel, uint8_t type, bool code) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = sel;
  s.type = type;
  s.present = 1;
  s.dpl = 0;
  s.db = code ? 0 : 1;  // L=1 requires D=0
  s.s = 1;
  s.l = code ? 1 : 0;
  s.g = 1;
  return s;
}

}  // namespace

Expected<void> write_boot_gdt(GuestMemory& mem) {
  const std::array<uint64_t, 4> gdt = {0, 0, 0x00af9b000000ffffULL, 0x00cf93000000ffffULL};
  return mem.write_obj(kGdtAddr, gdt);
}

void long_mode_sregs(kvm_sregs& s, uint64_t cr3) {
  s.cs = flat_segment(kBootCs, 0xb, true);
  s.ds = s.es = s.fs = s.gs = s.ss = flat_segment(kBootDs, 0x3, false);
  s.gdt.base = kGdtAddr;
  s.gdt.limit = 4 * 8 - 1;
  s.idt.base = 0;
  s.idt.limit = 0;
  // VMX refuses to enter with an unusable TR: a busy 64-bit TSS descriptor, never used.
  s.tr = kvm_segment{};
  s.tr.limit = 0xffff;
  s.tr.type = 0xb;
  s.tr.present = 1;
  s.ldt = kvm_segment{};
  s.ldt.type = 0x2;
  s.ldt.present = 1;
  s.ldt.limit = 0xffff;
  s.cr3 = cr3;
  s.cr4 = kCr4Pae;
  s.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Pg;
  s.efer = kEferLme | kEferLma;
}

Expected<void> setup_boot_cpu(GuestMemory& mem, Vcpu& bsp) {
  GEARS_TRY(write_boot_gdt(mem));
  auto cr3 = build_identity_page_tables(mem, kPml4Addr);
  if (!cr3) return fail(cr3.error());
  auto s = bsp.sregs();
  if (!s) return fail(s.error());
  long_mode_sregs(*s, *cr3);
  GEARS_TRY(bsp.set_sregs(*s));
  kvm_regs r{};
  r.rflags = 0x2;
  r.rip = kKernelLoadAddr + 0x200;
  r.rsi = kZeroPageAddr;
  r.rsp = kBootStackTop;
  GEARS_TRY(bsp.set_regs(r));

  // What firmware does on the BSP: LINT0 delivers the 8259's ExtINT, LINT1 is NMI.
  kvm_lapic_state lapic{};
  if (::ioctl(bsp.fd(), KVM_GET_LAPIC, &lapic) < 0) return fail_errno("KVM_GET_LAPIC");
  auto set_reg = [&](uint32_t off, uint32_t v) { std::memcpy(lapic.regs + off, &v, 4); };
  set_reg(kApicLvt0, kApicModeExtInt);
  set_reg(kApicLvt1, kApicModeNmi);
  if (::ioctl(bsp.fd(), KVM_SET_LAPIC, &lapic) < 0) return fail_errno("KVM_SET_LAPIC");
  return {};
}

}  // namespace gears::vmm::x86
