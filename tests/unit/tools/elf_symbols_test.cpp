// resolve_symbol() against a real libc: the test process's own libc.so.6 segments are copied
// into guest memory at the same layout, so the resolver reads what it reads in a guest process
// (relocated dynamic section, GNU hash, versioned names).
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <link.h>

#include <cstring>
#include <string>

#include "core/guest_memory.h"
#include "page_table_builder.h"
#include "tools/inject/elf_symbols.h"

namespace gears::vmm::inject {
namespace {

using introspect::testing::PageTableBuilder;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGuestBase = 0x0000'7f00'0000'0000ULL;  // where "libc" lives in the guest
constexpr uint64_t kGpaBase = 0x400000;
constexpr uint64_t kSpan = 4 * kMiB;                       // enough for libc's segments? checked

struct HostLibc {
  uint64_t base = 0;
  uint64_t end = 0;
  const ElfW(Phdr)* phdr = nullptr;
  int phnum = 0;
};

int find_libc(dl_phdr_info* info, size_t, void* data) {
  auto* out = static_cast<HostLibc*>(data);
  if (!info->dlpi_name || !std::strstr(info->dlpi_name, "libc.so.6")) return 0;
  out->base = info->dlpi_addr;
  out->phdr = info->dlpi_phdr;
  out->phnum = info->dlpi_phnum;
  for (int i = 0; i < info->dlpi_phnum; ++i)
    if (info->dlpi_phdr[i].p_type == PT_LOAD)
      out->end = std::max<uint64_t>(out->end, info->dlpi_addr + info->dlpi_phdr[i].p_vaddr + info->dlpi_phdr[i].p_memsz);
  return 1;
}

class ElfSymbolsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dl_iterate_phdr(find_libc, &libc);
    if (!libc.base) GTEST_SKIP() << "no libc.so.6 in this process";
    if (libc.end - libc.base > kSpan) GTEST_SKIP() << "libc larger than the test's guest window";
    auto m = GuestMemory::create(16 * kMiB);
    ASSERT_TRUE(m);
    mem = std::move(*m);
    pt.emplace(mem, 0x10000, 0x11000);
    for (uint64_t off = 0; off < kSpan; off += 2 * kMiB)
      pt->map(kGuestBase + off, kGpaBase + off, 2 * kMiB, PageTableBuilder::kRw | PageTableBuilder::kUser);
    // Copy each loaded segment (the gaps between them stay zero, as unmapped in no way matters
    // to the resolver: it only reads the header, the dynamic section and the tables).
    for (int i = 0; i < libc.phnum; ++i) {
      const auto& ph = libc.phdr[i];
      if (ph.p_type != PT_LOAD) continue;
      const auto* src = reinterpret_cast<const uint8_t*>(libc.base + ph.p_vaddr);
      ASSERT_TRUE(mem.write(kGpaBase + ph.p_vaddr, std::span<const uint8_t>(src, ph.p_filesz)));
    }
    // ld.so relocated the dynamic section's pointers in place to *this* process's base: move
    // them to the guest base, as the guest's own ld.so would have set them.
    for (int i = 0; i < libc.phnum; ++i) {
      const auto& ph = libc.phdr[i];
      if (ph.p_type != PT_DYNAMIC) continue;
      for (uint64_t off = 0; off + sizeof(ElfW(Dyn)) <= ph.p_memsz; off += sizeof(ElfW(Dyn))) {
        ElfW(Dyn) d;
        ASSERT_TRUE(mem.read(kGpaBase + ph.p_vaddr + off, std::span<uint8_t>(reinterpret_cast<uint8_t*>(&d), sizeof d)));
        if (d.d_tag == DT_NULL) break;
        if (d.d_un.d_ptr >= libc.base && d.d_un.d_ptr < libc.end) {
          d.d_un.d_ptr = d.d_un.d_ptr - libc.base + kGuestBase;
          ASSERT_TRUE(mem.write(kGpaBase + ph.p_vaddr + off,
                                std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&d), sizeof d)));
        }
      }
    }
  }
  uint64_t host_offset(const char* name) {
    void* h = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD);
    void* sym = h ? dlsym(h, name) : nullptr;
    if (h) dlclose(h);
    return sym ? reinterpret_cast<uint64_t>(sym) - libc.base : 0;
  }
  HostLibc libc;
  GuestMemory mem;
  std::optional<PageTableBuilder> pt;
};

TEST_F(ElfSymbolsTest, FindsTheLoaderFunctionsAtTheirHostOffsets) {
  introspect::AddressSpace as(mem, pt->cr3());
  for (const char* name : {"dlopen", "dlsym", "dlerror", "dlclose", "open"}) {
    const uint64_t want = host_offset(name);
    ASSERT_NE(want, 0u) << name;
    auto got = resolve_symbol(as, kGuestBase, name);
    ASSERT_TRUE(got) << name << ": " << got.error().what();
    EXPECT_EQ(*got - kGuestBase, want) << name;
  }
}

TEST_F(ElfSymbolsTest, UnknownNamesAndBadBasesAreErrors) {
  introspect::AddressSpace as(mem, pt->cr3());
  EXPECT_FALSE(resolve_symbol(as, kGuestBase, "gears_no_such_symbol"));
  EXPECT_FALSE(resolve_symbol(as, kGuestBase + 4096, "dlopen"));      // no ELF header there
  EXPECT_FALSE(resolve_symbol(as, 0x0000'6000'0000'0000ULL, "dlopen"));  // unmapped
}

TEST_F(ElfSymbolsTest, CorruptHashTableIsAnErrorNotACrash) {
  introspect::AddressSpace as(mem, pt->cr3());
  // Scribble over every byte of the image after the ELF header page in coarse strides: the
  // resolver must fail or succeed, never read outside guest memory or loop forever.
  for (uint64_t off = 4096; off < libc.end - libc.base; off += 4099) {
    const uint8_t junk[8] = {0xff, 0xff, 0xff, 0x7f, 0x01, 0x00, 0x00, 0x80};
    ASSERT_TRUE(mem.write(kGpaBase + off, junk));
  }
  (void)resolve_symbol(as, kGuestBase, "dlopen");
  SUCCEED();
}

}  // namespace
}  // namespace gears::vmm::inject
