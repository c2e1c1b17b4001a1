// Boot CPU state for the kernel's 64-bit entry (boot protocol "64-bit boot"): long mode with
// identity paging, flat __BOOT_CS (0x10) / __BOOT_DS (0x18) from our GDT, RSI = zero page,
// RIP = load address + 0x200. APs need nothing: the in-kernel LAPIC does INIT/SIPI.
#pragma once

#include <linux/kvm.h>

#include <cstdint>

#include "core/guest_memory.h"
#include "core/vcpu.h"
#include "gears/expected.h"

namespace gears::vmm::x86 {

inline constexpr uint64_t kCr0Pe = 1, kCr0Mp = 2, kCr0Et = 0x10, kCr0Ne = 0x20, kCr0Pg = 1ULL << 31;
inline constexpr uint64_t kCr4Pae = 0x20;
inline constexpr uint64_t kEferLme = 0x100, kEferLma = 0x400;

// Writes the boot GDT at kGdtAddr (null, null, 64-bit code, data).
Expected<void> write_boot_gdt(GuestMemory& mem);

// Fills the segment/control registers of `s` for the 64-bit entry with paging rooted at `cr3`.
void long_mode_sregs(kvm_sregs& s, uint64_t cr3);

// Sets up the BSP: GDT, page tables, sregs, regs, LAPIC LINT0=ExtINT / LINT1=NMI.
Expected<void> setup_boot_cpu(GuestMemory& mem, Vcpu& bsp);

}  // namespace gears::vmm::x86
