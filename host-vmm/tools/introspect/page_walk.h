// Guest-virtual -> guest-physical translation by walking the guest's own x86-64 page tables.
//
// The walk reads every table through GuestMemory, so a hostile entry (pointing past RAM, into
// the MMIO hole, at itself) yields an error value, never a crash; a walk is at most four reads,
// so self-referencing tables cannot loop. 4-level paging only (no LA57), as the Debian guest
// kernel runs. The walker does not set accessed/dirty bits: the guest never learns of it.
#pragma once

#include <cstdint>
#include <string>

#include "core/guest_memory.h"
#include "gears/expected.h"

namespace gears::vmm::introspect {

// Who is asking and for what: the permission checks the CPU would make.
struct Access {
  enum class Mode : uint8_t { kKernel, kUser };
  enum class Kind : uint8_t { kRead, kWrite, kExecute };
  Mode mode = Mode::kKernel;
  Kind kind = Kind::kRead;
  // CR0.WP: when set, kernel writes honour read-only entries (Linux always sets it).
  bool write_protect = true;

  static constexpr Access kernel_read() { return {Mode::kKernel, Kind::kRead, true}; }
  static constexpr Access kernel_write() { return {Mode::kKernel, Kind::kWrite, true}; }
  static constexpr Access user_read() { return {Mode::kUser, Kind::kRead, true}; }
  static constexpr Access user_write() { return {Mode::kUser, Kind::kWrite, true}; }
  static constexpr Access user_exec() { return {Mode::kUser, Kind::kExecute, true}; }
};

struct Translation {
  uint64_t gpa = 0;        // guest-physical address of the byte asked for
  uint64_t page_size = 0;  // 4 KiB, 2 MiB or 1 GiB
  bool writable = false;   // R/W set at every level
  bool user = false;       // U/S set at every level
  bool executable = false; // XD clear at every level
  // Bytes from gva to the end of its page: how far a copy may go with this translation.
  uint64_t bytes_left_in_page() const { return page_size - (gpa & (page_size - 1)); }
};

// Page-table bits (Intel SDM vol. 3 4.5).
inline constexpr uint64_t kPtePresent = 1ULL << 0;
inline constexpr uint64_t kPteWrite = 1ULL << 1;
inline constexpr uint64_t kPteUser = 1ULL << 2;
inline constexpr uint64_t kPteHuge = 1ULL << 7;  // PS: 1 GiB in a PDPTE, 2 MiB in a PDE
inline constexpr uint64_t kPteNx = 1ULL << 63;
inline constexpr uint64_t kPteAddrMask = 0x000F'FFFF'FFFF'F000ULL;  // bits 51:12

// CR3 -> physical base of the PML4: drops the PCID (11:0), the no-flush bit (63) and LAM bits.
constexpr uint64_t cr3_table_base(uint64_t cr3) { return cr3 & kPteAddrMask; }

// True for 48-bit canonical addresses (bits 63:47 all equal).
constexpr bool is_canonical(uint64_t gva) {
  uint64_t top = gva >> 47;
  return top == 0 || top == 0x1FFFF;
}

// Translates one address. Errors read like
//   "guest address 0x7f0000001000 not mapped (PDE not present) in CR3 0x1000".
Expected<Translation> translate(const GuestMemory& mem, uint64_t cr3, uint64_t gva,
                                Access access = Access::kernel_read());

// "0x..." for messages.
std::string hex(uint64_t v);

}  // namespace gears::vmm::introspect
