#include "deploy/elf_inspect.h"

#include <elf.h>

#include <cstring>

namespace gears::vmm::deploy {

namespace {

bool in_bounds(uint64_t offset, uint64_t len, size_t size) { return offset <= size && len <= size - offset; }

// A NUL-terminated string inside `table` at `offset`, or false.
bool string_at(std::span<const uint8_t> table, uint64_t offset, std::string& out) {
  if (offset >= table.size()) return false;
  const auto* begin = reinterpret_cast<const char*>(table.data() + offset);
  const void* nul = std::memchr(begin, 0, table.size() - offset);
  if (!nul) return false;
  out.assign(begin, static_cast<const char*>(nul));
  return true;
}

}  // namespace

Expected<ElfImage> ElfImage::parse(std::span<const uint8_t> f) {
  Elf64_Ehdr eh;
  if (f.size() < sizeof eh) return fail("not an ELF file (" + std::to_string(f.size()) + " bytes)");
  std::memcpy(&eh, f.data(), sizeof eh);
  if (std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return fail("not an ELF file (bad magic)");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) return fail("not a 64-bit ELF file");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) return fail("not a little-endian ELF file");
  if (eh.e_shoff == 0 || eh.e_shnum == 0) return fail("ELF file has no section headers");
  if (eh.e_shentsize != sizeof(Elf64_Shdr)) return fail("ELF section header size is wrong");
  if (!in_bounds(eh.e_shoff, uint64_t{eh.e_shnum} * sizeof(Elf64_Shdr), f.size()))
    return fail("ELF section headers lie outside the file");
  if (eh.e_shstrndx == SHN_UNDEF || eh.e_shstrndx >= eh.e_shnum) return fail("ELF file has no section name table");

  ElfImage img;
  img.file_ = f;
  img.type_ = eh.e_type;
  img.machine_ = eh.e_machine;
  std::vector<Elf64_Shdr> sh(eh.e_shnum);
  std::memcpy(sh.data(), f.data() + eh.e_shoff, sh.size() * sizeof(Elf64_Shdr));
  auto bytes_of = [&](const Elf64_Shdr& s, std::span<const uint8_t>& out) {
    if (s.sh_type == SHT_NOBITS) {
      out = {};
      return true;
    }
    if (!in_bounds(s.sh_offset, s.sh_size, f.size())) return false;
    out = f.subspan(s.sh_offset, s.sh_size);
    return true;
  };
  std::span<const uint8_t> names;
  if (!bytes_of(sh[eh.e_shstrndx], names)) return fail("ELF section name table lies outside the file");
  for (size_t i = 0; i < sh.size(); ++i) {
    Section s;
    s.type = sh[i].sh_type;
    s.link = sh[i].sh_link;
    s.entsize = sh[i].sh_entsize;
    if (!bytes_of(sh[i], s.data)) return fail("ELF section " + std::to_string(i) + " lies outside the file");
    if (i != 0 && !string_at(names, sh[i].sh_name, s.name))
      return fail("ELF section " + std::to_string(i) + " has a bad name offset");
    img.sections_.push_back(std::move(s));
  }
  return img;
}

bool ElfImage::section(std::string_view name, std::span<const uint8_t>& out) const {
  for (const auto& s : sections_)
    if (s.name == name) {
      out = s.data;
      return true;
    }
  return false;
}

Expected<std::set<std::string>> ElfImage::dynamic_exports() const {
  const Section* dynsym = nullptr;
  for (const auto& s : sections_)
    if (s.type == SHT_DYNSYM) dynsym = &s;
  if (!dynsym) return fail("ELF file has no dynamic symbol table");
  if (dynsym->entsize != sizeof(Elf64_Sym)) return fail("ELF dynamic symbol size is wrong");
  if (dynsym->link == 0 || dynsym->link >= sections_.size() || sections_[dynsym->link].type != SHT_STRTAB)
    return fail("ELF dynamic symbol table has no string table");
  const auto strtab = sections_[dynsym->link].data;
  std::set<std::string> out;
  for (size_t off = 0; off + sizeof(Elf64_Sym) <= dynsym->data.size(); off += sizeof(Elf64_Sym)) {
    Elf64_Sym sym;
    std::memcpy(&sym, dynsym->data.data() + off, sizeof sym);
    const unsigned bind = ELF64_ST_BIND(sym.st_info);
    if (sym.st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK && bind != STB_GNU_UNIQUE)) continue;
    const unsigned vis = ELF64_ST_VISIBILITY(sym.st_other);
    if (vis != STV_DEFAULT && vis != STV_PROTECTED) continue;
    std::string name;
    if (!string_at(strtab, sym.st_name, name)) return fail("ELF dynamic symbol has a bad name offset");
    if (!name.empty()) out.insert(std::move(name));
  }
  return out;
}

Expected<std::string> ElfImage::modinfo(std::string_view key) const {
  std::span<const uint8_t> info;
  if (!section(".modinfo", info)) return fail("kernel module has no .modinfo section");
  const std::string prefix = std::string(key) + "=";
  size_t pos = 0;
  while (pos < info.size()) {
    std::string entry;
    if (!string_at(info, pos, entry)) return fail("kernel module .modinfo is not NUL-terminated");
    if (entry.compare(0, prefix.size(), prefix) == 0) return entry.substr(prefix.size());
    pos += entry.size() + 1;
  }
  return fail("kernel module has no " + std::string(key) + " in .modinfo");
}

}  // namespace gears::vmm::deploy
