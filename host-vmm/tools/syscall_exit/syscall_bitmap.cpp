#include "tools/syscall_exit/syscall_bitmap.h"

#include <algorithm>
#include <atomic>

namespace gears::vmm::syscall_exit {

SyscallBitmap::SyscallBitmap(std::span<uint8_t> storage, uint32_t count)
    : bits_(storage.first(std::min<size_t>(storage.size(), (static_cast<size_t>(count) + 7) / 8))),
      count_(static_cast<uint32_t>(std::min<size_t>(count, bits_.size() * 8))) {}

Expected<void> SyscallBitmap::set(uint32_t nr, bool on) {
  if (nr >= count_)
    return fail("syscall number " + std::to_string(nr) + " is outside the stub's table (0.." +
                std::to_string(count_ == 0 ? 0 : count_ - 1) + ")");
  std::atomic_ref<uint8_t> byte(bits_[nr / 8]);
  const auto mask = static_cast<uint8_t>(1u << (nr % 8));
  if (on) byte.fetch_or(mask);
  else byte.fetch_and(static_cast<uint8_t>(~mask));
  return {};
}

void SyscallBitmap::set_all(bool on) {
  for (uint32_t nr = 0; nr < count_; ++nr) (void)set(nr, on);
}

bool SyscallBitmap::test(uint32_t nr) const {
  if (nr >= count_) return false;
  return (std::atomic_ref<uint8_t>(bits_[nr / 8]).load() >> (nr % 8)) & 1;
}

std::vector<uint32_t> SyscallBitmap::selected() const {
  std::vector<uint32_t> out;
  for (uint32_t nr = 0; nr < count_; ++nr)
    if (test(nr)) out.push_back(nr);
  return out;
}

}  // namespace gears::vmm::syscall_exit
