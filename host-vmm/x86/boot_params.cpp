#include "x86/boot_params.h"

#include <asm/bootparam.h>

#include <algorithm>
#include <cstring>

#include "x86/layout.h"

namespace gears::vmm::x86 {

static_assert(sizeof(boot_params) == 4096);
static_assert(offsetof(boot_params, hdr) == 0x1f1);

std::vector<E820Entry> make_e820(const std::vector<MemoryRegion>& regions) {
  std::vector<E820Entry> e;
  e.push_back({0, kEbdaStart, kE820Ram});
  e.push_back({kEbdaStart, kKernelLoadAddr - kEbdaStart, kE820Reserved});
  for (const MemoryRegion& r : regions) {
    uint64_t start = std::max(r.gpa, kKernelLoadAddr);
    if (r.gpa + r.size > start) e.push_back({start, r.gpa + r.size - start, kE820Ram});
  }
  return e;
}

Expected<uint64_t> place_initrd(uint64_t size, uint64_t kernel_end, uint64_t low_ram_end, uint64_t initrd_addr_max) {
  uint64_t top = std::min(low_ram_end, initrd_addr_max + 1);
  auto mib = [](uint64_t b) { return std::to_string((b + (1 << 20) - 1) >> 20) + " MiB"; };
  if (size > top || ((top - size) & ~0xfffULL) < kernel_end)
    return fail("initrd (" + mib(size) + ") does not fit in guest memory below " + mib(top) +
                " next to the kernel: give the guest more memory (--mem)");
  return (top - size) & ~0xfffULL;
}

Expected<BootSetup> setup_boot(GuestMemory& mem, const BzImage& k, const std::string& cmdline,
                               std::span<const uint8_t> initrd, uint64_t rsdp_addr) {
  if (mem.regions().empty()) return fail("no guest memory");
  uint64_t low_end = mem.regions().front().gpa + mem.regions().front().size;
  uint64_t kernel_end = kKernelLoadAddr + std::max<uint64_t>(k.init_size, k.kernel.size());
  if (kernel_end > low_end) return fail("guest memory too small for the kernel (needs " + std::to_string(kernel_end >> 20) + " MiB)");
  GEARS_TRY(mem.write(kKernelLoadAddr, k.kernel));

  if (cmdline.size() + 1 > std::min<uint64_t>(k.cmdline_size, kCmdlineMax))
    return fail("kernel command line too long (" + std::to_string(cmdline.size()) + " > " + std::to_string(k.cmdline_size) + " bytes)");
  GEARS_TRY(mem.fill(kCmdlineAddr, 0, kCmdlineMax));
  GEARS_TRY(mem.write(kCmdlineAddr, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(cmdline.data()), cmdline.size())));

  BootSetup out;
  if (!initrd.empty()) {
    auto at = place_initrd(initrd.size(), kernel_end, low_end, k.initrd_addr_max);
    if (!at) return fail(at.error());
    GEARS_TRY(mem.write(*at, initrd));
    out.initrd_addr = *at;
    out.initrd_size = initrd.size();
  }

  boot_params bp{};
  std::memcpy(&bp.hdr, k.setup_header.data(), std::min(sizeof bp.hdr, k.setup_header.size()));
  bp.hdr.type_of_loader = 0xff;  // "undefined" boot loader
  bp.hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
  bp.hdr.heap_end_ptr = 0xfe00;
  bp.hdr.cmd_line_ptr = static_cast<uint32_t>(kCmdlineAddr);
  bp.hdr.vid_mode = 0xffff;  // "normal"
  bp.hdr.ramdisk_image = static_cast<uint32_t>(out.initrd_addr);
  bp.hdr.ramdisk_size = static_cast<uint32_t>(out.initrd_size);
  bp.ext_ramdisk_image = static_cast<uint32_t>(out.initrd_addr >> 32);
  bp.ext_ramdisk_size = static_cast<uint32_t>(out.initrd_size >> 32);
  bp.acpi_rsdp_addr = rsdp_addr;
  auto e820 = make_e820(mem.regions());
  if (e820.size() > E820_MAX_ENTRIES_ZEROPAGE) return fail("too many e820 entries");
  bp.e820_entries = static_cast<uint8_t>(e820.size());
  for (size_t i = 0; i < e820.size(); ++i) {
    bp.e820_table[i].addr = e820[i].addr;
    bp.e820_table[i].size = e820[i].size;
    bp.e820_table[i].type = e820[i].type;
  }
  GEARS_TRY(mem.write_obj(kZeroPageAddr, bp));
  return out;
}

}  // namespace gears::vmm::x86
