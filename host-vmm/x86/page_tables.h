// Identity page tables for the 64-bit boot entry: 0-4 GiB with 2 MiB pages. The kernel builds
// its own tables early; these only have to cover the kernel, zero page, command line and initrd.
#pragma once

#include <cstdint>

#include "core/guest_memory.h"
#include "gears/expected.h"

namespace gears::vmm::x86 {

inline constexpr uint64_t kPtePresent = 1, kPteWrite = 2, kPteLarge = 0x80;

// Writes PML4 at `pml4`, the PDPT at +4 KiB and four page directories after it (6 pages).
// Returns the value for CR3.
Expected<uint64_t> build_identity_page_tables(GuestMemory& mem, uint64_t pml4);

}  // namespace gears::vmm::x86
