#include "tools/syscall_exit/stub_placement.h"

#include <cstdio>

#include "tools/introspect/page_walk.h"

namespace gears::vmm::syscall_exit {

using introspect::hex;
using introspect::kPteAddrMask;
using introspect::kPteHuge;
using introspect::kPtePresent;
using introspect::kPteWrite;

namespace {
constexpr uint64_t k2MiB = 2ULL << 20;
constexpr int64_t kRel32Reach = (1LL << 31) - static_cast<int64_t>(k2MiB);

// Reads the table entry for `gva` at `shift` in table `table`; it must be a present non-leaf.
Expected<uint64_t> next_table(const GuestMemory& mem, uint64_t table, uint64_t gva, unsigned shift, const char* name) {
  uint64_t at = table + ((gva >> shift) & 0x1FF) * 8;
  auto e = mem.read_obj<uint64_t>(at);
  if (!e) return fail(std::string(name) + " of the syscall entry at " + hex(at) + " is outside guest RAM");
  if (!(*e & kPtePresent)) return fail(std::string("syscall entry ") + hex(gva) + " is not mapped (" + name + ")");
  if (*e & kPteHuge) return fail(std::string("syscall entry ") + hex(gva) + " is mapped by a huge " + name);
  return *e & kPteAddrMask;
}
}  // namespace

Expected<StubPlacement> find_stub_slot(const GuestMemory& mem, uint64_t cr3, uint64_t entry, PlacementLimits limits) {
  if (entry < limits.lowest || entry >= limits.highest)
    return fail("syscall entry " + hex(entry) + " is outside the kernel image area " + hex(limits.lowest) + ".." +
                hex(limits.highest));
  auto pdpt = next_table(mem, introspect::cr3_table_base(cr3), entry, 39, "PML4E");
  if (!pdpt) return fail(pdpt.error());
  auto pd = next_table(mem, *pdpt, entry, 30, "PDPTE");
  if (!pd) return fail(pd.error());

  const uint64_t pd_base_gva = entry & ~((1ULL << 30) - 1);  // the 1 GiB this directory maps
  const int here = static_cast<int>((entry >> 21) & 0x1FF);
  auto usable = [&](int i) -> Expected<bool> {
    uint64_t gva = pd_base_gva + static_cast<uint64_t>(i) * k2MiB;
    if (gva < limits.lowest || gva + k2MiB > limits.highest) return false;
    int64_t dist = static_cast<int64_t>(gva - entry);
    if (dist > kRel32Reach || dist < -kRel32Reach) return false;
    auto e = mem.read_obj<uint64_t>(*pd + static_cast<uint64_t>(i) * 8);
    if (!e) return fail(e.error());
    return !(*e & kPtePresent);
  };
  // Upwards first: past the end of the image is where the kernel leaves the directory empty.
  for (int i = here + 1; i < 512; ++i) {
    auto u = usable(i);
    if (!u) return fail(u.error());
    if (*u) return StubPlacement{pd_base_gva + static_cast<uint64_t>(i) * k2MiB, *pd + static_cast<uint64_t>(i) * 8};
  }
  for (int i = here - 1; i >= 0; --i) {
    auto u = usable(i);
    if (!u) return fail(u.error());
    if (*u) return StubPlacement{pd_base_gva + static_cast<uint64_t>(i) * k2MiB, *pd + static_cast<uint64_t>(i) * 8};
  }
  return fail("no free 2 MiB slot near the syscall entry " + hex(entry) + " in the kernel image area");
}

Expected<void> map_stub(GuestMemory& mem, const StubPlacement& placement, uint64_t pt_gpa, uint64_t stub_gpa) {
  if ((pt_gpa | stub_gpa) & 0xFFF) return fail("stub page and page table must be 4 KiB aligned");
  if (!mem.contains(pt_gpa, 0x1000) || !mem.contains(stub_gpa, 0x1000))
    return fail("stub page " + hex(stub_gpa) + " or its page table " + hex(pt_gpa) + " is outside guest RAM");
  auto pde = mem.read_obj<uint64_t>(placement.pde_gpa);
  if (!pde) return fail(pde.error());
  if (*pde & kPtePresent) return fail("stub slot " + hex(placement.stub_gva) + " is no longer free");
  GEARS_TRY(mem.fill(pt_gpa, 0, 0x1000));
  // PTE: present, read-only, supervisor, executable (NX clear); first 4 KiB of the slot.
  GEARS_TRY(mem.write_obj<uint64_t>(pt_gpa, stub_gpa | kPtePresent));
  // PDE last, so the guest never sees a half-built table.
  GEARS_TRY(mem.write_obj<uint64_t>(placement.pde_gpa, pt_gpa | kPtePresent | kPteWrite));
  return {};
}

}  // namespace gears::vmm::syscall_exit
