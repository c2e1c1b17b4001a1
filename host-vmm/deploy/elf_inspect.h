// Just enough ELF64 reading to check a bundle's halves before anything is loaded: the header
// (class, machine, type), sections by name, the dynamic symbols a shared object defines, and a
// kernel module's .modinfo strings. The file is untrusted: every offset, size and string is
// bounds-checked, and a malformed file is an error value.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm::deploy {

class ElfImage {
 public:
  // Accepts only ELF64 little-endian files with a section header table.
  static Expected<ElfImage> parse(std::span<const uint8_t> file);

  uint16_t type() const { return type_; }        // ET_REL, ET_DYN, ...
  uint16_t machine() const { return machine_; }  // EM_X86_64, ...

  // A section's bytes (empty span for SHT_NOBITS); false when there is no such section.
  bool section(std::string_view name, std::span<const uint8_t>& out) const;
  // Names of the global/weak symbols .dynsym defines (not undefined ones), without versions.
  Expected<std::set<std::string>> dynamic_exports() const;
  // The value of `key=` in .modinfo (a kernel module), or an error naming what is missing.
  Expected<std::string> modinfo(std::string_view key) const;

 private:
  struct Section {
    std::string name;
    uint32_t type = 0;
    uint32_t link = 0;
    uint64_t entsize = 0;
    std::span<const uint8_t> data;
  };
  std::span<const uint8_t> file_;
  uint16_t type_ = 0, machine_ = 0;
  std::vector<Section> sections_;
};

}  // namespace gears::vmm::deploy
