// One guest address space (a CR3) as a tool sees it: copies to and from guest-virtual memory,
// strings and pointer arrays, with every byte reached through the page-table walk and
// GuestMemory. All sizes are bounded by the caller; guest data is never trusted.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/guest_memory.h"
#include "gears/expected.h"
#include "tools/introspect/page_walk.h"
#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm::introspect {

// Whether the address space rooted at `root` (a PML4's guest-physical address) has been torn
// down: Linux clears the user half of a PML4 (entries 0-255) while it frees a dead process's
// page tables, and a live process always maps something there. True also when the root is
// not in guest RAM. Antfarm's exit inference, for processes that make no exit call.
bool user_half_empty(const GuestMemory& mem, uint64_t root);

class AddressSpace {
 public:
  // The address space of the process a vCPU was running at an exit; refuses a vCPU that is not
  // in 64-bit mode with 4-level paging. Kernel accesses honour the guest's CR0.WP.
  static Expected<AddressSpace> of_vcpu(GuestMemory& mem, const VcpuRegs& regs);

  AddressSpace(GuestMemory& mem, uint64_t cr3, bool write_protect = true)
      : mem_(&mem), cr3_(cr3), wp_(write_protect) {}

  uint64_t cr3() const { return cr3_; }
  Expected<Translation> translate(uint64_t gva, Access access) const;

  // Copies spanning any number of pages; each page is translated with `access`. A failure
  // part-way may leave a write partly done (as a faulting copy_to_user would).
  Expected<void> read(uint64_t gva, std::span<uint8_t> out, Access access = Access::kernel_read()) const;
  Expected<void> write(uint64_t gva, std::span<const uint8_t> in, Access access = Access::kernel_write());

  template <class T>
    requires std::is_trivially_copyable_v<T>
  Expected<T> read_obj(uint64_t gva, Access access = Access::kernel_read()) const {
    T v{};
    GEARS_TRY(read(gva, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof v), access));
    return v;
  }

  // A NUL-terminated string of at most max_len bytes (NUL excluded). Reads page by page and
  // stops at the NUL, so an unmapped page after the string is never touched.
  Expected<std::string> read_string(uint64_t gva, uint64_t max_len,
                                    Access access = Access::kernel_read()) const;

  // A NULL-terminated array of 64-bit pointers (argv/envp style), at most max_count entries
  // before the NULL (the NULL itself is not returned).
  Expected<std::vector<uint64_t>> read_pointer_array(uint64_t gva, uint64_t max_count,
                                                     Access access = Access::kernel_read()) const;

  // argv/envp: the pointer array and the strings it points to, bounded by count, per-string
  // length and total bytes (strings + NULs), like the kernel's MAX_ARG_STRLEN / ARG_MAX.
  struct StringArrayLimits {
    uint64_t max_count = 4096;
    uint64_t max_string = 128 * 1024;
    uint64_t max_total = 2 * 1024 * 1024;
  };
  Expected<std::vector<std::string>> read_string_array(uint64_t gva, StringArrayLimits limits,
                                                       Access access = Access::kernel_read()) const;

 private:
  Access with_wp(Access a) const {
    a.write_protect = wp_;
    return a;
  }
  GuestMemory* mem_;
  uint64_t cr3_;
  bool wp_;
};

}  // namespace gears::vmm::introspect
