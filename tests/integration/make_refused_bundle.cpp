// make-refused-bundle IN OUT: copies the service bundle IN to OUT with its kernel half changed so
// that the guest kernel refuses it while gears-vmm's own checks still pass (for run-deploy's
// `kernel_refuses` case).
//
// The change: the CRC of one symbol in the module's `__versions` section (modversions) is
// flipped. gears-vmm checks the ELF header and the `.modinfo` vermagic (host-vmm/deploy/
// bundle_check.cpp), both untouched; the guest kernel compares each CRC with the one its own
// export carries and fails init_module with EINVAL ("disagrees about version of symbol X").
// `module_layout` is skipped: a bad CRC there is refused earlier, with ENOEXEC.
// Prints the symbol it changed. Exit 0 done, 1 error.
#include <elf.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gears/bundle.h"

namespace {

// The kernel's struct modversion_info (include/linux/module.h) on 64-bit.
struct ModversionInfo {
  uint64_t crc;
  char name[64 - sizeof(uint64_t)];
};
static_assert(sizeof(ModversionInfo) == 64);

bool in_bounds(const std::vector<uint8_t>& ko, uint64_t offset, uint64_t size) {
  return offset <= ko.size() && size <= ko.size() - offset;
}

// Flips one CRC in `__versions`; returns the symbol's name, or an error.
gears::Expected<std::string> corrupt_one_crc(std::vector<uint8_t>& ko) {
  Elf64_Ehdr eh;
  if (ko.size() < sizeof eh) return gears::fail("kernel half is shorter than an ELF header");
  std::memcpy(&eh, ko.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0 || eh.e_ident[EI_CLASS] != ELFCLASS64)
    return gears::fail("kernel half is not an ELF64 file");
  if (eh.e_shentsize != sizeof(Elf64_Shdr) || !in_bounds(ko, eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr)) ||
      eh.e_shstrndx >= eh.e_shnum)
    return gears::fail("kernel half has a bad section header table");
  auto section = [&](unsigned i) {
    Elf64_Shdr sh;
    std::memcpy(&sh, ko.data() + eh.e_shoff + i * sizeof(Elf64_Shdr), sizeof sh);
    return sh;
  };
  const Elf64_Shdr names = section(eh.e_shstrndx);
  if (!in_bounds(ko, names.sh_offset, names.sh_size)) return gears::fail("kernel half has a bad .shstrtab");
  for (unsigned i = 0; i < eh.e_shnum; ++i) {
    const Elf64_Shdr sh = section(i);
    if (sh.sh_name >= names.sh_size) continue;
    const char* name = reinterpret_cast<const char*>(ko.data() + names.sh_offset + sh.sh_name);
    if (std::string(name, strnlen(name, names.sh_size - sh.sh_name)) != "__versions") continue;
    if (!in_bounds(ko, sh.sh_offset, sh.sh_size)) return gears::fail("kernel half has a bad __versions section");
    for (uint64_t off = 0; off + sizeof(ModversionInfo) <= sh.sh_size; off += sizeof(ModversionInfo)) {
      ModversionInfo v;
      std::memcpy(&v, ko.data() + sh.sh_offset + off, sizeof v);
      const std::string sym(v.name, strnlen(v.name, sizeof v.name));
      if (sym.empty() || sym == "module_layout") continue;
      v.crc ^= 0x5a5a5a5au;  // the kernel compares the low 32 bits
      std::memcpy(ko.data() + sh.sh_offset + off, &v, sizeof v);
      return sym;
    }
    return gears::fail("__versions lists no symbol besides module_layout");
  }
  return gears::fail("kernel half has no __versions section (built without modversions?)");
}

int run(const char* in, const char* out) {
  auto image = gears::bundle::read_file(in);
  if (!image) {
    std::fprintf(stderr, "make-refused-bundle: %s\n", image.error().what().c_str());
    return 1;
  }
  auto entries = gears::bundle::read(*image);
  if (!entries) {
    std::fprintf(stderr, "make-refused-bundle: %s: %s\n", in, entries.error().what().c_str());
    return 1;
  }
  std::string symbol;
  for (auto& e : *entries) {
    if (e.kind != GEARS_BUNDLE_KERNEL_HALF) continue;
    auto sym = corrupt_one_crc(e.data);
    if (!sym) {
      std::fprintf(stderr, "make-refused-bundle: %s: %s\n", e.name.c_str(), sym.error().what().c_str());
      return 1;
    }
    symbol = *sym;
  }
  if (symbol.empty()) {
    std::fprintf(stderr, "make-refused-bundle: %s has no kernel half\n", in);
    return 1;
  }
  auto bytes = gears::bundle::write(*entries);  // new blob CRCs: the bundle itself stays valid
  if (!bytes) {
    std::fprintf(stderr, "make-refused-bundle: %s\n", bytes.error().what().c_str());
    return 1;
  }
  if (auto r = gears::bundle::write_file(out, *bytes); !r) {
    std::fprintf(stderr, "make-refused-bundle: %s\n", r.error().what().c_str());
    return 1;
  }
  std::printf("make-refused-bundle: %s: CRC of %s flipped in __versions\n", out, symbol.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: make-refused-bundle IN.gears OUT.gears\n");
    return 2;
  }
  return run(argv[1], argv[2]);
}
