// Fuzz target: the guest page-table walker and the address-space readers built on it
// (host-vmm/tools/introspect), which read a hostile guest's page tables, strings and argv/envp
// arrays. The input is a CR3, a few guest-virtual addresses and the contents of the first
// 32 KiB of a 2 MiB guest (room for a whole 4-level walk, self-references and loops).
// Properties: no crash (ASan/UBSan); where a read translation lands in RAM the read succeeds;
// bounded reads stay bounded.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "core/guest_memory.h"
#include "tools/introspect/address_space.h"
#include "tools/introspect/page_walk.h"

using namespace gears::vmm;

namespace {
constexpr size_t kTables = 32 << 10;

GuestMemory& memory() {
  static GuestMemory* m = [] {
    auto mem = GuestMemory::create(2 << 20);
    if (!mem) std::abort();
    return new GuestMemory(std::move(*mem));
  }();
  return *m;
}

uint64_t take64(const uint8_t*& p, size_t& n) {
  uint64_t v = 0;
  const size_t k = n < 8 ? n : 8;
  std::memcpy(&v, p, k);
  p += k, n -= k;
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  GuestMemory& mem = memory();
  const uint8_t* p = data;
  size_t n = size;
  // CR3 points somewhere in the first 32 KiB most of the time (or anywhere: a hostile CR3).
  uint64_t cr3 = take64(p, n);
  if (!(cr3 & 1)) cr3 &= kTables - 1;
  uint64_t gva[4];
  for (auto& g : gva) g = take64(p, n);
  auto tables = mem.span(0, kTables);
  if (!tables) std::abort();
  std::memset(tables->data(), 0, kTables);
  std::memcpy(tables->data(), p, n < kTables ? n : kTables);

  introspect::AddressSpace as(mem, cr3);
  for (uint64_t g : gva) {
    for (auto access : {introspect::Access::kernel_read(), introspect::Access::user_write(),
                        introspect::Access::user_exec()}) {
      // A leaf may map any guest-physical address (device memory, past RAM: the walk is right
      // to answer it); where it is RAM, reading through the address space must then work.
      auto t = introspect::translate(mem, cr3, g, access);
      if (t && access.kind == introspect::Access::Kind::kRead && mem.contains(t->gpa, 1)) {
        uint8_t byte = 0;
        if (!as.read(g, {&byte, 1}, access)) std::abort();
      }
    }
  }
  char buf[64];
  (void)as.read(gva[0], {reinterpret_cast<uint8_t*>(buf), sizeof buf});
  auto s = as.read_string(gva[1], 200);
  if (s && s->size() > 200) std::abort();
  introspect::AddressSpace::StringArrayLimits lim{16, 64, 512};
  auto arr = as.read_string_array(gva[2], lim);
  if (arr) {
    size_t total = 0;
    for (const auto& str : *arr) total += str.size() + 1;
    if (arr->size() > lim.max_count || total > lim.max_total) std::abort();
  }
  return 0;
}
