#include "core/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <utility>

namespace gears::vmm {
namespace {
constexpr uint64_t k2MiB = 2ULL << 20;

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

Expected<GuestMemory> GuestMemory::create(uint64_t size) {
  if (size == 0) return fail("guest memory size must be non-zero");
  if (size > (1ULL << 46)) return fail("guest memory size " + hex(size) + " is too large");
  size = (size + k2MiB - 1) & ~(k2MiB - 1);

  GuestMemory mem;
  mem.fd_ = memfd_create("gears-guest-ram", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (mem.fd_ < 0) return fail_errno("memfd_create for guest RAM");
  if (ftruncate(mem.fd_, static_cast<off_t>(size)) != 0)
    return fail_errno("sizing guest RAM to " + std::to_string(size >> 20) + " MiB");
  // A peer VMM's mapping of this RAM must never fault with SIGBUS: the size is final.
  if (fcntl(mem.fd_, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0)
    return fail_errno("sealing the guest RAM memfd");

  auto map_region = [&](uint64_t gpa, uint64_t len, uint64_t off) -> Expected<void> {
    void* p = mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, mem.fd_,
                   static_cast<off_t>(off));
    if (p == MAP_FAILED) return fail_errno("mapping " + std::to_string(len >> 20) + " MiB of guest RAM");
    madvise(p, len, MADV_MERGEABLE);
    mem.regions_.push_back({gpa, len, static_cast<uint8_t*>(p), off});
    return {};
  };
  uint64_t low = std::min(size, kLowRamEnd);
  GEARS_TRY(map_region(0, low, 0));
  if (size > low) GEARS_TRY(map_region(kHighRamStart, size - low, low));
  mem.size_ = size;
  return mem;
}

std::optional<uint64_t> GuestMemory::file_offset(uint64_t ram_size, uint64_t gpa, uint64_t len) {
  const uint64_t low = std::min(ram_size, kLowRamEnd);
  if (gpa < low) {
    if (len > low - gpa) return std::nullopt;
    return gpa;
  }
  if (gpa < kHighRamStart || ram_size <= low) return std::nullopt;
  const uint64_t off = gpa - kHighRamStart, high = ram_size - low;
  if (off >= high || len > high - off) return std::nullopt;
  return low + off;
}

GuestMemory::GuestMemory(GuestMemory&& o) noexcept
    : regions_(std::move(o.regions_)), size_(std::exchange(o.size_, 0)), fd_(std::exchange(o.fd_, -1)) {
  o.regions_.clear();
}

GuestMemory& GuestMemory::operator=(GuestMemory&& o) noexcept {
  if (this != &o) {
    release();
    regions_ = std::move(o.regions_);
    o.regions_.clear();
    size_ = std::exchange(o.size_, 0);
    fd_ = std::exchange(o.fd_, -1);
  }
  return *this;
}

GuestMemory::~GuestMemory() { release(); }

void GuestMemory::release() {
  for (auto& r : regions_) munmap(r.host, r.size);
  regions_.clear();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
  size_ = 0;
}

const MemoryRegion* GuestMemory::find(uint64_t gpa, uint64_t len) const {
  for (const auto& r : regions_) {
    // Written so that no sum can overflow: gpa >= r.gpa, then offset and len against size.
    if (gpa < r.gpa) continue;
    uint64_t off = gpa - r.gpa;
    if (off >= r.size) continue;
    if (len > r.size - off) return nullptr;
    return &r;
  }
  return nullptr;
}

bool GuestMemory::contains(uint64_t gpa, uint64_t len) const { return find(gpa, len) != nullptr; }

Expected<std::span<uint8_t>> GuestMemory::span(uint64_t gpa, uint64_t len) {
  const MemoryRegion* r = find(gpa, len);
  if (!r) return fail("guest-physical range " + hex(gpa) + "+" + hex(len) + " is outside guest RAM");
  return std::span<uint8_t>(r->host + (gpa - r->gpa), len);
}

Expected<std::span<const uint8_t>> GuestMemory::span(uint64_t gpa, uint64_t len) const {
  const MemoryRegion* r = find(gpa, len);
  if (!r) return fail("guest-physical range " + hex(gpa) + "+" + hex(len) + " is outside guest RAM");
  return std::span<const uint8_t>(r->host + (gpa - r->gpa), len);
}

Expected<void> GuestMemory::read(uint64_t gpa, std::span<uint8_t> out) const {
  auto s = span(gpa, out.size());
  if (!s) return Unexpected<Error>{s.error()};
  std::memcpy(out.data(), s->data(), out.size());
  return {};
}

Expected<void> GuestMemory::write(uint64_t gpa, std::span<const uint8_t> in) {
  auto s = span(gpa, in.size());
  if (!s) return Unexpected<Error>{s.error()};
  std::memcpy(s->data(), in.data(), in.size());
  return {};
}

Expected<void> GuestMemory::fill(uint64_t gpa, uint8_t value, uint64_t len) {
  auto s = span(gpa, len);
  if (!s) return Unexpected<Error>{s.error()};
  std::memset(s->data(), value, len);
  return {};
}

}  // namespace gears::vmm
