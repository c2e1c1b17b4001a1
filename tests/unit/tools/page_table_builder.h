// Test helper: builds real x86-64 4-level page tables inside a GuestMemory.
#pragma once

#include <cstdint>

#include "core/guest_memory.h"
#include "tools/introspect/page_walk.h"

namespace gears::vmm::introspect::testing {

class PageTableBuilder {
 public:
  static constexpr uint64_t kRw = kPteWrite;
  static constexpr uint64_t kUser = kPteUser;
  static constexpr uint64_t kNx = kPteNx;

  // Tables are allocated from `next_table` upwards, 4 KiB each.
  PageTableBuilder(GuestMemory& mem, uint64_t pml4, uint64_t next_table)
      : mem_(mem), pml4_(pml4), next_(next_table) {
    zero(pml4_);
  }
  uint64_t cr3() const { return pml4_; }

  // Maps one page of `size` (4 KiB, 2 MiB or 1 GiB). Intermediate entries get P|RW|US so the
  // leaf's flags decide, unless `upper_flags` overrides them.
  void map(uint64_t gva, uint64_t gpa, uint64_t size, uint64_t flags, uint64_t upper_flags = kRw | kUser) {
    unsigned leaf_shift = size == (1ULL << 30) ? 30 : size == (2ULL << 20) ? 21 : 12;
    uint64_t table = pml4_;
    for (unsigned shift = 39; shift > leaf_shift; shift -= 9) {
      uint64_t slot = table + ((gva >> shift) & 0x1FF) * 8;
      uint64_t e = *mem_.read_obj<uint64_t>(slot);
      if (!(e & kPtePresent)) {
        uint64_t t = next_;
        next_ += 0x1000;
        zero(t);
        e = t | kPtePresent | upper_flags;
        (void)mem_.write_obj<uint64_t>(slot, e);
      }
      table = e & kPteAddrMask;
    }
    uint64_t leaf = gpa | kPtePresent | flags | (leaf_shift != 12 ? kPteHuge : 0);
    (void)mem_.write_obj<uint64_t>(table + ((gva >> leaf_shift) & 0x1FF) * 8, leaf);
  }

  // The GPA of the entry at `level` (0 = PML4E .. 3 = PTE) for gva; only along existing tables.
  uint64_t entry_gpa(uint64_t gva, int level) const {
    uint64_t table = pml4_;
    for (int l = 0; l < level; ++l) {
      uint64_t e = *mem_.read_obj<uint64_t>(table + ((gva >> (39 - 9 * l)) & 0x1FF) * 8);
      table = e & kPteAddrMask;
    }
    return table + ((gva >> (39 - 9 * level)) & 0x1FF) * 8;
  }

 private:
  void zero(uint64_t gpa) { (void)mem_.fill(gpa, 0, 0x1000); }
  GuestMemory& mem_;
  uint64_t pml4_;
  uint64_t next_;
};

}  // namespace gears::vmm::introspect::testing
