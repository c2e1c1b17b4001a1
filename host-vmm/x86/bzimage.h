// The Linux x86 boot image (bzImage): parse and validate the setup header (boot protocol,
// Documentation/arch/x86/boot.rst) and split the file into setup and protected-mode parts.
// The file is untrusted input: every offset and size is checked against the file's length.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm::x86 {

inline constexpr uint16_t kMinBootProtocol = 0x020c;  // 2.12: xloadflags, 64-bit entry

struct BzImage {
  uint16_t version = 0;          // boot protocol, e.g. 0x020f
  uint8_t setup_sects = 0;
  uint8_t loadflags = 0;
  uint16_t xloadflags = 0;
  uint32_t initrd_addr_max = 0;
  uint32_t cmdline_size = 0;
  uint32_t kernel_alignment = 0;
  uint32_t init_size = 0;        // memory the kernel needs from its load address while booting
  uint64_t pref_address = 0;
  std::vector<uint8_t> setup_header;  // bytes 0x1f1.. of the file: copied into the zero page
  std::vector<uint8_t> kernel;        // the protected-mode part, loaded at kKernelLoadAddr
};

Expected<BzImage> parse_bzimage(std::span<const uint8_t> file);
Expected<BzImage> load_bzimage(const std::string& path);

// The kernel release (e.g. "6.1.0-NN-amd64"): the first word of the version string the setup
// header's kernel_version field (0x20e) points at (+0x200). Module vermagic starts with it.
Expected<std::string> kernel_release(std::span<const uint8_t> file);

// Reads a whole (regular) file; `what` names it in errors ("kernel", "initrd").
Expected<std::vector<uint8_t>> read_file(const std::string& path, const std::string& what);

}  // namespace gears::vmm::x86
