// A one-instruction "firmware" at the x86 reset vector (F000:FFF0 = 0xffff0).
//
// On HW-reduced ACPI without EFI, Linux's default reboot path ends in machine_real_restart():
// back to real mode and a jump to the BIOS reset vector. There is no BIOS here, so gears-vmm
// puts a stub there that writes the ACPI reset register, which the VMM reports as a reboot
// (or a panic, after a panic). Without it the CPU would run zeroed memory forever.
#pragma once

#include "core/guest_memory.h"
#include "gears/expected.h"

namespace gears::vmm::x86 {

inline constexpr uint64_t kResetVectorAddr = 0xffff0;

Expected<void> write_reset_stub(GuestMemory& mem);

}  // namespace gears::vmm::x86
