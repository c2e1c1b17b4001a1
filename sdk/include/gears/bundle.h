// Reading and writing service bundles (format: gears/abi/bundle.h).
// The reader treats its input as untrusted: every size, offset and checksum is validated and
// a malformed bundle is an error value, never a crash.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gears/abi/bundle.h"
#include "gears/expected.h"

namespace gears::bundle {

struct Entry {
  gears_bundle_kind kind;
  std::string name;
  std::vector<std::uint8_t> data;
};

std::uint32_t crc32(std::span<const std::uint8_t> data);

// Serialises entries (names shorter than GEARS_BUNDLE_NAME_LEN, one manifest).
Expected<std::vector<std::uint8_t>> write(const std::vector<Entry>& entries);
// Parses and validates a whole bundle image.
Expected<std::vector<Entry>> read(std::span<const std::uint8_t> image);

Expected<std::vector<std::uint8_t>> read_file(const std::string& path);
Expected<void> write_file(const std::string& path, std::span<const std::uint8_t> data);

// The entry of one kind, or nullptr.
const Entry* find(const std::vector<Entry>& entries, gears_bundle_kind kind);

}  // namespace gears::bundle
