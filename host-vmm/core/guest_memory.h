// Guest-physical memory: the one place that maps guest RAM and the only way anything in
// gears-vmm touches it. Every access is bounds-checked; guest addresses are untrusted input.
//
// RAM is backed by a memfd, sealed at its size, so that a peer VMM on the same host can map it
// (shm/vm_group.h: one-copy transfers between co-located guests) and never see it shrink. Layout follows the PC: RAM from
// 0 up to the 32-bit MMIO hole (kLowRamEnd), the rest above 4 GiB.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm {

struct MemoryRegion {
  uint64_t gpa = 0;       // first guest-physical address
  uint64_t size = 0;      // bytes
  uint8_t* host = nullptr;
  uint64_t fd_offset = 0; // where this region starts in the memfd
};

class GuestMemory {
 public:
  // Start of the 32-bit MMIO hole (devices, IOAPIC, LAPIC live above it).
  static constexpr uint64_t kLowRamEnd = 0xC000'0000ULL;
  static constexpr uint64_t kHighRamStart = 0x1'0000'0000ULL;

  // Maps `size` bytes of guest RAM (rounded up to 2 MiB), split around the MMIO hole.
  static Expected<GuestMemory> create(uint64_t size);

  // Where guest-physical [gpa, gpa+len) lies in the memfd of a VM with `ram_size` bytes of RAM
  // laid out as create() does; nullopt unless the range is RAM of one region. A peer VMM that
  // maps this VM's memfd (shm/vm_group.h) translates with it.
  static std::optional<uint64_t> file_offset(uint64_t ram_size, uint64_t gpa, uint64_t len);

  GuestMemory() = default;
  GuestMemory(GuestMemory&&) noexcept;
  GuestMemory& operator=(GuestMemory&&) noexcept;
  GuestMemory(const GuestMemory&) = delete;
  GuestMemory& operator=(const GuestMemory&) = delete;
  ~GuestMemory();

  uint64_t size() const { return size_; }
  int fd() const { return fd_; }
  const std::vector<MemoryRegion>& regions() const { return regions_; }

  // True when [gpa, gpa+len) is RAM inside a single region (no wrap-around).
  bool contains(uint64_t gpa, uint64_t len) const;

  // A host view of [gpa, gpa+len); fails unless the range lies inside one RAM region.
  Expected<std::span<uint8_t>> span(uint64_t gpa, uint64_t len);
  Expected<std::span<const uint8_t>> span(uint64_t gpa, uint64_t len) const;

  // Bounds-checked copies; a range must lie inside one RAM region (RAM is not contiguous
  // across the MMIO hole).
  Expected<void> read(uint64_t gpa, std::span<uint8_t> out) const;
  Expected<void> write(uint64_t gpa, std::span<const uint8_t> in);
  Expected<void> fill(uint64_t gpa, uint8_t value, uint64_t len);

  template <class T>
    requires std::is_trivially_copyable_v<T>
  Expected<T> read_obj(uint64_t gpa) const {
    T v{};
    auto r = read(gpa, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&v), sizeof v));
    if (!r) return Unexpected<Error>{r.error()};
    return v;
  }
  template <class T>
    requires std::is_trivially_copyable_v<T>
  Expected<void> write_obj(uint64_t gpa, const T& v) {
    return write(gpa, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&v), sizeof v));
  }

 private:
  const MemoryRegion* find(uint64_t gpa, uint64_t len) const;
  void release();

  std::vector<MemoryRegion> regions_;
  uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace gears::vmm
