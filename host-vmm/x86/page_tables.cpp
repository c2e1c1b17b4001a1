#include "x86/page_tables.h"

namespace gears::vmm::x86 {

Expected<uint64_t> build_identity_page_tables(GuestMemory& mem, uint64_t pml4) {
  const uint64_t pdpt = pml4 + 0x1000, pd = pml4 + 0x2000;
  GEARS_TRY(mem.fill(pml4, 0, 6 * 0x1000));
  GEARS_TRY(mem.write_obj<uint64_t>(pml4, pdpt | kPtePresent | kPteWrite));
  for (uint64_t i = 0; i < 4; ++i) {
    GEARS_TRY(mem.write_obj<uint64_t>(pdpt + i * 8, (pd + i * 0x1000) | kPtePresent | kPteWrite));
    for (uint64_t j = 0; j < 512; ++j) {
      uint64_t phys = (i << 30) | (j << 21);
      GEARS_TRY(mem.write_obj<uint64_t>(pd + i * 0x1000 + j * 8, phys | kPtePresent | kPteWrite | kPteLarge));
    }
  }
  return pml4;
}

}  // namespace gears::vmm::x86
