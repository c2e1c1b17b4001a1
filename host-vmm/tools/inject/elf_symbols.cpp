#include "tools/inject/elf_symbols.h"

#include <elf.h>

#include <string>
#include <vector>

namespace gears::vmm::inject {

namespace {

using introspect::Access;

constexpr uint32_t kMaxPhdrs = 64, kMaxDyn = 1024, kMaxChain = 1u << 16, kMaxBuckets = 1u << 20;
constexpr uint64_t kMaxName = 256;

template <class T>
Expected<T> rd(const introspect::AddressSpace& as, uint64_t gva) {
  return as.read_obj<T>(gva, Access::user_read());
}

}  // namespace

uint32_t gnu_hash(std::string_view name) {
  uint32_t h = 5381;
  for (unsigned char c : name) h = h * 33 + c;
  return h;
}

Expected<uint64_t> resolve_symbol(const introspect::AddressSpace& as, uint64_t base, std::string_view name) {
  auto ehdr = rd<Elf64_Ehdr>(as, base);
  if (!ehdr) return fail("no ELF header at " + std::to_string(base) + ": " + ehdr.error().what());
  if (std::string_view(reinterpret_cast<const char*>(ehdr->e_ident), 4) != "\x7f" "ELF" ||
      ehdr->e_ident[EI_CLASS] != ELFCLASS64 || ehdr->e_machine != EM_X86_64)
    return fail("the mapping is not an x86-64 ELF object");
  if (ehdr->e_phnum == 0 || ehdr->e_phnum > kMaxPhdrs || ehdr->e_phentsize != sizeof(Elf64_Phdr))
    return fail("implausible program header table");
  uint64_t dyn_addr = 0;
  for (uint32_t i = 0; i < ehdr->e_phnum; ++i) {
    auto ph = rd<Elf64_Phdr>(as, base + ehdr->e_phoff + i * sizeof(Elf64_Phdr));
    if (!ph) return fail("program headers unreadable: " + ph.error().what());
    if (ph->p_type == PT_DYNAMIC) dyn_addr = base + ph->p_vaddr;
  }
  if (!dyn_addr) return fail("the object has no dynamic section");
  // ld.so relocates d_ptr values in place for most objects; tolerate both forms.
  auto fix = [base](uint64_t v) { return v < base ? v + base : v; };
  uint64_t symtab = 0, strtab = 0, strsz = 0, gnuhash = 0, versym = 0;
  for (uint32_t i = 0; i < kMaxDyn; ++i) {
    auto d = rd<Elf64_Dyn>(as, dyn_addr + i * sizeof(Elf64_Dyn));
    if (!d) return fail("dynamic section unreadable: " + d.error().what());
    if (d->d_tag == DT_NULL) break;
    switch (d->d_tag) {
      case DT_SYMTAB: symtab = fix(d->d_un.d_ptr); break;
      case DT_STRTAB: strtab = fix(d->d_un.d_ptr); break;
      case DT_STRSZ: strsz = d->d_un.d_val; break;
      case DT_GNU_HASH: gnuhash = fix(d->d_un.d_ptr); break;
      case DT_VERSYM: versym = fix(d->d_un.d_ptr); break;
      default: break;
    }
  }
  if (!symtab || !strtab || !gnuhash) return fail("the object has no DT_SYMTAB/DT_STRTAB/DT_GNU_HASH");

  struct Header {
    uint32_t nbuckets, symoffset, bloom_size, bloom_shift;
  };
  auto hdr = rd<Header>(as, gnuhash);
  if (!hdr) return fail("GNU hash table unreadable: " + hdr.error().what());
  if (hdr->nbuckets == 0 || hdr->nbuckets > kMaxBuckets || hdr->bloom_size > kMaxBuckets)
    return fail("implausible GNU hash table");
  const uint32_t h = gnu_hash(name);
  const uint64_t buckets = gnuhash + sizeof(Header) + uint64_t{hdr->bloom_size} * 8;
  const uint64_t chains = buckets + uint64_t{hdr->nbuckets} * 4;
  auto idx = rd<uint32_t>(as, buckets + (h % hdr->nbuckets) * 4);
  if (!idx) return fail("GNU hash bucket unreadable");
  if (*idx < hdr->symoffset) return fail("symbol " + std::string(name) + " not found");
  uint64_t first = 0;
  for (uint32_t n = 0, i = *idx; n < kMaxChain; ++n, ++i) {
    auto ch = rd<uint32_t>(as, chains + uint64_t{i - hdr->symoffset} * 4);
    if (!ch) return fail("GNU hash chain unreadable");
    if ((*ch | 1) == (h | 1)) {
      auto sym = rd<Elf64_Sym>(as, symtab + uint64_t{i} * sizeof(Elf64_Sym));
      if (!sym) return fail("symbol table unreadable");
      if (strsz && sym->st_name >= strsz) return fail("symbol name outside the string table");
      auto s = as.read_string(strtab + sym->st_name, kMaxName, Access::user_read());
      if (s && *s == name && sym->st_shndx != SHN_UNDEF && sym->st_value != 0) {
        const uint64_t addr = base + sym->st_value;
        bool hidden = false;
        if (versym) {
          auto v = rd<uint16_t>(as, versym + uint64_t{i} * 2);
          hidden = v && (*v & 0x8000);
        }
        if (!hidden) return addr;
        if (!first) first = addr;
      }
    }
    if (*ch & 1) break;
  }
  if (first) return first;
  return fail("symbol " + std::string(name) + " not found");
}

}  // namespace gears::vmm::inject
