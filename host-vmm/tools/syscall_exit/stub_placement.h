// Where the selective-exit stub goes in the guest kernel's address space, and the page-table
// edits that map it: guest-memory writes only, done by the VMM at the first LSTAR trap (before
// any process exists), so they are testable without KVM.
//
// Mechanism (FINDINGS.md, option (c)): a free 2 MiB slot in the page directory that maps the
// kernel image, near entry_SYSCALL_64, so the stub's final jump is a direct `jmp rel32`. That
// page directory is shared by every address space (all copy the same top-level kernel entry),
// so processes created later and those already running see the stub. The slot must lie below
// the module area: without KASLR modules start at 0xffffffffa0000000 inside the same page
// directory, and vmalloc would reuse a page table we planted there. With PTI the user-mode
// copy of the top-level table does not map this directory: use a PTI-off guest (pti=off), as
// the project does for speed anyway (FINDINGS: PTI costs ~13 us per syscall under emulation).
#pragma once

#include <cstdint>

#include "core/guest_memory.h"
#include "gears/expected.h"

namespace gears::vmm::syscall_exit {

struct StubPlacement {
  uint64_t stub_gva = 0;  // 2 MiB aligned; the stub page is its first 4 KiB
  uint64_t pde_gpa = 0;   // the page-directory entry to fill
};

struct PlacementLimits {
  uint64_t lowest = 0xffff'ffff'8000'0000ULL;   // __START_KERNEL_map
  uint64_t highest = 0xffff'ffff'a000'0000ULL;  // exclusive: MODULES_VADDR without KASLR
};

// The free (not-present) 2 MiB slot nearest above `entry` (else below) in the page directory
// mapping `entry`, within rel32 reach of it. Errors if entry is not mapped through 2 MiB
// granularity page tables we can extend, or no slot is free.
Expected<StubPlacement> find_stub_slot(const GuestMemory& mem, uint64_t cr3, uint64_t entry,
                                       PlacementLimits limits = {});

// Maps the 4 KiB page at stub_gpa at placement.stub_gva: a zeroed page table at pt_gpa with
// one PTE (present, kernel-only, read-only, executable) and the PDE pointing at it (present,
// writable, kernel). pt_gpa and stub_gpa must be 4 KiB-aligned RAM the guest kernel treats as
// reserved (e820) but covers by its direct map. Refuses if the PDE is no longer free.
Expected<void> map_stub(GuestMemory& mem, const StubPlacement& placement, uint64_t pt_gpa, uint64_t stub_gpa);

}  // namespace gears::vmm::syscall_exit
