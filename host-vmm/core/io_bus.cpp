#include "core/io_bus.h"

#include <algorithm>
#include <cstdio>

namespace gears::vmm {

Expected<void> IoBus::add(uint64_t base, uint64_t len, std::shared_ptr<IoDevice> dev) {
  if (len == 0 || base + len < base) return fail(name_ + ": empty or wrapping window");
  std::lock_guard lock(mu_);
  for (const auto& e : entries_) {
    if (base < e.base + e.len && e.base < base + len) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "%s: %.*s at 0x%llx overlaps %.*s", name_.c_str(),
                    static_cast<int>(dev->name().size()), dev->name().data(),
                    static_cast<unsigned long long>(base), static_cast<int>(e.dev->name().size()),
                    e.dev->name().data());
      return fail(buf);
    }
  }
  entries_.push_back({base, len, std::move(dev)});
  std::sort(entries_.begin(), entries_.end(), [](const Entry& a, const Entry& b) { return a.base < b.base; });
  return {};
}

const IoBus::Entry* IoBus::lookup(uint64_t addr, uint64_t len) const {
  for (const auto& e : entries_) {
    if (addr >= e.base && addr - e.base < e.len && len <= e.len - (addr - e.base)) return &e;
  }
  return nullptr;
}

// Resolves the device under the lock, then calls it outside: a device may take time (disk
// I/O) and must not block registration or other buses' lookups.
std::pair<std::shared_ptr<IoDevice>, uint64_t> IoBus::claim(uint64_t addr, uint64_t len) const {
  std::lock_guard lock(mu_);
  const Entry* e = lookup(addr, len);
  if (!e) return {nullptr, 0};
  return {e->dev, addr - e->base};
}

bool IoBus::read(uint64_t addr, std::span<uint8_t> data) const {
  auto [dev, off] = claim(addr, data.size());
  if (!dev) return false;
  dev->read(off, data);
  return true;
}

bool IoBus::write(uint64_t addr, std::span<const uint8_t> data) const {
  auto [dev, off] = claim(addr, data.size());
  if (!dev) return false;
  dev->write(off, data);
  return true;
}

}  // namespace gears::vmm
