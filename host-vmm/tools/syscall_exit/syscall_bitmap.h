// The per-syscall selection bitmap the selective-exit stub tests with `bt`.
//
// It lives in the stub page in guest memory (the stub reads it on every syscall, on every
// vCPU); the VMM flips bits through its own mapping while the guest runs, so a change takes
// effect at the next syscall without stopping any vCPU. Bits are updated with atomic byte
// read-modify-writes so that two control requests cannot lose each other's updates.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm::syscall_exit {

class SyscallBitmap {
 public:
  // `storage` must hold at least (count + 7) / 8 bytes and outlive the bitmap.
  SyscallBitmap(std::span<uint8_t> storage, uint32_t count);

  uint32_t count() const { return count_; }
  Expected<void> set(uint32_t nr, bool on);
  void set_all(bool on);
  bool test(uint32_t nr) const;           // false outside [0, count)
  std::vector<uint32_t> selected() const; // ascending

 private:
  std::span<uint8_t> bits_;
  uint32_t count_;
};

}  // namespace gears::vmm::syscall_exit
