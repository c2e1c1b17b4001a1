// The Linux zero page (struct boot_params): setup header from the bzImage, e820 memory map,
// command line, initrd and RSDP address.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/guest_memory.h"
#include "gears/expected.h"
#include "x86/bzimage.h"

namespace gears::vmm::x86 {

inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;

struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
};

// RAM below the EBDA, the legacy hole reserved up to 1 MiB, then RAM around the 32-bit MMIO
// hole exactly as `regions` lays it out (the hole itself is left out: nothing is RAM there).
std::vector<E820Entry> make_e820(const std::vector<MemoryRegion>& regions);

// Highest page-aligned address for an initrd of `size` bytes: at the top of low RAM, under
// the kernel's initrd_addr_max, above `kernel_end`.
Expected<uint64_t> place_initrd(uint64_t size, uint64_t kernel_end, uint64_t low_ram_end, uint64_t initrd_addr_max);

struct BootSetup {
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;
};

// Writes kernel, command line, initrd and the zero page into guest memory.
Expected<BootSetup> setup_boot(GuestMemory& mem, const BzImage& kernel, const std::string& cmdline,
                               std::span<const uint8_t> initrd, uint64_t rsdp_addr);

}  // namespace gears::vmm::x86
