// Service bundle reader/writer: header + TOC + 8-byte-aligned blobs (gears/abi/bundle.h).
#include "gears/bundle.h"

#include <array>
#include <cstring>
#include <fstream>
#include <iterator>

namespace gears::bundle {
namespace {

constexpr std::size_t kHeader = sizeof(gears_bundle_header);
constexpr std::size_t kEntry = sizeof(gears_bundle_entry);

std::uint64_t align8(std::uint64_t v) { return (v + 7) & ~std::uint64_t{7}; }

bool known_kind(std::uint32_t k) {
  return k >= GEARS_BUNDLE_MANIFEST && k <= GEARS_BUNDLE_KERNEL_HALF;
}

}  // namespace

std::uint32_t crc32(std::span<const std::uint8_t> data) {
  static const auto table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  for (std::uint8_t b : data) c = table[(c ^ b) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

Expected<std::vector<std::uint8_t>> write(const std::vector<Entry>& entries) {
  if (entries.size() > GEARS_BUNDLE_MAX_ENTRIES) return fail("bundle: too many entries");
  int manifests = 0;
  for (const Entry& e : entries) {
    if (e.name.empty() || e.name.size() >= GEARS_BUNDLE_NAME_LEN)
      return fail("bundle: entry name '" + e.name + "' is empty or too long");
    if (!known_kind(e.kind)) return fail("bundle: unknown entry kind");
    manifests += e.kind == GEARS_BUNDLE_MANIFEST;
  }
  if (manifests != 1) return fail("bundle: needs exactly one manifest entry");

  std::uint64_t offset = align8(kHeader + kEntry * entries.size());
  std::vector<gears_bundle_entry> toc(entries.size());
  for (std::size_t i = 0; i < entries.size(); ++i) {
    gears_bundle_entry& t = toc[i];
    std::memset(&t, 0, sizeof t);
    t.kind = entries[i].kind;
    t.crc32 = crc32(entries[i].data);
    t.offset = offset;
    t.size = entries[i].data.size();
    std::memcpy(t.name, entries[i].name.data(), entries[i].name.size());
    offset = align8(offset + t.size);
  }
  std::vector<std::uint8_t> out(offset, 0);
  gears_bundle_header h{};
  std::memcpy(h.magic, GEARS_BUNDLE_MAGIC, sizeof h.magic);
  h.version = GEARS_BUNDLE_VERSION;
  h.entry_count = static_cast<std::uint32_t>(entries.size());
  h.file_size = out.size();
  std::memcpy(out.data(), &h, kHeader);
  for (std::size_t i = 0; i < entries.size(); ++i) {
    std::memcpy(out.data() + kHeader + i * kEntry, &toc[i], kEntry);
    if (!entries[i].data.empty())
      std::memcpy(out.data() + toc[i].offset, entries[i].data.data(), entries[i].data.size());
  }
  return out;
}

Expected<std::vector<Entry>> read(std::span<const std::uint8_t> image) {
  if (image.size() < kHeader) return fail("bundle: truncated header");
  gears_bundle_header h;
  std::memcpy(&h, image.data(), kHeader);
  if (std::memcmp(h.magic, GEARS_BUNDLE_MAGIC, sizeof h.magic) != 0)
    return fail("bundle: bad magic (not a gears bundle)");
  if (h.version != GEARS_BUNDLE_VERSION)
    return fail("bundle: unsupported version " + std::to_string(h.version));
  if (h.file_size != image.size())
    return fail("bundle: size mismatch (header says " + std::to_string(h.file_size) +
                ", file has " + std::to_string(image.size()) + ")");
  if (h.entry_count == 0 || h.entry_count > GEARS_BUNDLE_MAX_ENTRIES)
    return fail("bundle: bad entry count " + std::to_string(h.entry_count));
  const std::uint64_t toc_end = kHeader + std::uint64_t{h.entry_count} * kEntry;
  if (toc_end > image.size()) return fail("bundle: truncated table of contents");

  std::vector<Entry> out;
  int manifests = 0;
  for (std::uint32_t i = 0; i < h.entry_count; ++i) {
    gears_bundle_entry t;
    std::memcpy(&t, image.data() + kHeader + i * kEntry, kEntry);
    const std::string idx = "bundle: entry " + std::to_string(i);
    if (!known_kind(t.kind)) return fail(idx + ": unknown kind " + std::to_string(t.kind));
    if (std::memchr(t.name, 0, sizeof t.name) == nullptr) return fail(idx + ": unterminated name");
    // Overflow-safe range check: offset and size are each bounded by the image size first.
    if (t.offset < toc_end || t.offset > image.size() || t.size > image.size() - t.offset)
      return fail(idx + ": blob outside the file");
    auto blob = image.subspan(t.offset, t.size);
    if (crc32(blob) != t.crc32) return fail(idx + " (" + t.name + "): checksum mismatch");
    manifests += t.kind == GEARS_BUNDLE_MANIFEST;
    out.push_back(Entry{static_cast<gears_bundle_kind>(t.kind), t.name, {blob.begin(), blob.end()}});
  }
  if (manifests != 1) return fail("bundle: needs exactly one manifest entry");
  return out;
}

Expected<std::vector<std::uint8_t>> read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) return fail_errno("cannot open " + path);
  std::vector<std::uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  if (f.bad()) return fail_errno("cannot read " + path);
  return data;
}

Expected<void> write_file(const std::string& path, std::span<const std::uint8_t> data) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  if (!f) return fail_errno("cannot create " + path);
  f.write(reinterpret_cast<const char*>(data.data()), static_cast<std::streamsize>(data.size()));
  if (!f) return fail_errno("cannot write " + path);
  return {};
}

const Entry* find(const std::vector<Entry>& entries, gears_bundle_kind kind) {
  for (const Entry& e : entries)
    if (e.kind == kind) return &e;
  return nullptr;
}

}  // namespace gears::bundle
