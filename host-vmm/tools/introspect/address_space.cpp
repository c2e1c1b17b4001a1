#include "tools/introspect/address_space.h"

#include <algorithm>
#include <array>
#include <cstring>

namespace gears::vmm::introspect {

bool user_half_empty(const GuestMemory& mem, uint64_t root) {
  std::array<uint64_t, 256> user{};
  if (!mem.read(root & ~uint64_t{0xfff}, std::span(reinterpret_cast<uint8_t*>(user.data()), sizeof user))) return true;
  return std::all_of(user.begin(), user.end(), [](uint64_t e) { return e == 0; });
}

namespace {
// A copy's end must not wrap: [gva, gva+len) stays inside the 64-bit space.
Expected<void> check_range(uint64_t gva, uint64_t len) {
  if (len != 0 && gva + (len - 1) < gva)
    return fail("guest range " + hex(gva) + "+" + hex(len) + " wraps around the address space");
  return {};
}
}  // namespace

Expected<AddressSpace> AddressSpace::of_vcpu(GuestMemory& mem, const VcpuRegs& regs) {
  if (!regs.long_mode_4level())
    return fail("vCPU is not in 64-bit mode with 4-level paging (CR0 " + hex(regs.cr0) + ", CR4 " +
                hex(regs.cr4) + ", EFER " + hex(regs.efer) + ")");
  return AddressSpace(mem, regs.cr3, (regs.cr0 & VcpuRegs::kCr0Wp) != 0);
}

Expected<Translation> AddressSpace::translate(uint64_t gva, Access access) const {
  return introspect::translate(*mem_, cr3_, gva, with_wp(access));
}

Expected<void> AddressSpace::read(uint64_t gva, std::span<uint8_t> out, Access access) const {
  GEARS_TRY(check_range(gva, out.size()));
  uint64_t done = 0;
  while (done < out.size()) {
    auto t = translate(gva + done, access);
    if (!t) return fail(t.error());
    uint64_t chunk = std::min<uint64_t>(out.size() - done, t->bytes_left_in_page());
    GEARS_TRY(mem_->read(t->gpa, out.subspan(done, chunk)));
    done += chunk;
  }
  return {};
}

Expected<void> AddressSpace::write(uint64_t gva, std::span<const uint8_t> in, Access access) {
  GEARS_TRY(check_range(gva, in.size()));
  uint64_t done = 0;
  while (done < in.size()) {
    auto t = translate(gva + done, access);
    if (!t) return fail(t.error());
    uint64_t chunk = std::min<uint64_t>(in.size() - done, t->bytes_left_in_page());
    GEARS_TRY(mem_->write(t->gpa, in.subspan(done, chunk)));
    done += chunk;
  }
  return {};
}

Expected<std::string> AddressSpace::read_string(uint64_t gva, uint64_t max_len, Access access) const {
  std::string s;
  uint64_t at = gva;
  // max_len + 1 bytes may be examined: the string plus its NUL.
  while (s.size() <= max_len) {
    if (at < gva) return fail("guest string at " + hex(gva) + " wraps around the address space");
    auto t = translate(at, access);
    if (!t) return fail(t.error());
    uint64_t want = std::min<uint64_t>(t->bytes_left_in_page(), max_len + 1 - s.size());
    auto bytes = static_cast<const GuestMemory*>(mem_)->span(t->gpa, want);
    if (!bytes) return fail(bytes.error());
    const void* nul = std::memchr(bytes->data(), 0, bytes->size());
    uint64_t take = nul ? static_cast<uint64_t>(static_cast<const uint8_t*>(nul) - bytes->data()) : want;
    s.append(reinterpret_cast<const char*>(bytes->data()), take);
    if (nul) return s;
    at += want;
  }
  return fail("guest string at " + hex(gva) + " has no NUL within " + std::to_string(max_len) + " bytes");
}

Expected<std::vector<uint64_t>> AddressSpace::read_pointer_array(uint64_t gva, uint64_t max_count,
                                                                 Access access) const {
  std::vector<uint64_t> out;
  for (uint64_t i = 0; i <= max_count; ++i) {
    uint64_t at = gva + i * 8;
    if (at < gva) return fail("guest pointer array at " + hex(gva) + " wraps around the address space");
    auto p = read_obj<uint64_t>(at, access);
    if (!p) return fail(p.error());
    if (*p == 0) return out;
    if (i == max_count) break;
    out.push_back(*p);
  }
  return fail("guest pointer array at " + hex(gva) + " has more than " + std::to_string(max_count) +
              " entries");
}

Expected<std::vector<std::string>> AddressSpace::read_string_array(uint64_t gva, StringArrayLimits limits,
                                                                   Access access) const {
  auto ptrs = read_pointer_array(gva, limits.max_count, access);
  if (!ptrs) return fail(ptrs.error());
  std::vector<std::string> out;
  out.reserve(ptrs->size());
  uint64_t total = 0;
  for (uint64_t p : *ptrs) {
    uint64_t room = limits.max_total - std::min(total, limits.max_total);
    if (room == 0)
      return fail("guest string array at " + hex(gva) + " exceeds " + std::to_string(limits.max_total) + " bytes");
    auto s = read_string(p, std::min(limits.max_string, room - 1), access);
    if (!s) return fail(s.error());
    total += s->size() + 1;
    out.push_back(std::move(*s));
  }
  return out;
}

}  // namespace gears::vmm::introspect
