#include "acpi/aml.h"

namespace gears::vmm::acpi::aml {

namespace {

constexpr uint8_t kZeroOp = 0x00, kOneOp = 0x01, kNameOp = 0x08, kBytePrefix = 0x0a, kWordPrefix = 0x0b,
                  kDWordPrefix = 0x0c, kStringPrefix = 0x0d, kQWordPrefix = 0x0e, kScopeOp = 0x10,
                  kBufferOp = 0x11, kPackageOp = 0x12, kExtOpPrefix = 0x5b, kDeviceOp = 0x82,
                  kRootChar = 0x5c, kDualNamePrefix = 0x2e, kMultiNamePrefix = 0x2f;

void append(Bytes& out, const Bytes& b) { out.insert(out.end(), b.begin(), b.end()); }
void le(Bytes& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

}  // namespace

Bytes pkg_length(size_t len) {
  if (len + 1 <= 63) return {static_cast<uint8_t>(len + 1)};
  for (size_t n = 2; n <= 4; ++n) {
    size_t total = len + n;
    if (total < (size_t{1} << (4 + 8 * (n - 1)))) {
      Bytes b{static_cast<uint8_t>(((n - 1) << 6) | (total & 0xf))};
      for (size_t i = 1; i < n; ++i) b.push_back(static_cast<uint8_t>(total >> (4 + 8 * (i - 1))));
      return b;
    }
  }
  return {};  // > 256 MiB: never produced by gears-vmm's tables
}

Bytes name_string(const std::string& path) {
  Bytes out;
  std::string p = path;
  if (!p.empty() && p[0] == '\\') {
    out.push_back(kRootChar);
    p.erase(0, 1);
  }
  std::vector<std::string> segs;
  for (size_t start = 0; start <= p.size();) {
    size_t dot = p.find('.', start);
    std::string s = p.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    s.resize(4, '_');  // NameSegs are exactly 4 characters, padded with '_'
    segs.push_back(s);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  if (segs.size() == 2) out.push_back(kDualNamePrefix);
  if (segs.size() > 2) {
    out.push_back(kMultiNamePrefix);
    out.push_back(static_cast<uint8_t>(segs.size()));
  }
  for (const auto& s : segs) out.insert(out.end(), s.begin(), s.end());
  return out;
}

Bytes integer(uint64_t v) {
  Bytes out;
  if (v == 0) return {kZeroOp};
  if (v == 1) return {kOneOp};
  if (v <= 0xff) {
    out.push_back(kBytePrefix);
    le(out, v, 1);
  } else if (v <= 0xffff) {
    out.push_back(kWordPrefix);
    le(out, v, 2);
  } else if (v <= 0xffffffff) {
    out.push_back(kDWordPrefix);
    le(out, v, 4);
  } else {
    out.push_back(kQWordPrefix);
    le(out, v, 8);
  }
  return out;
}

Bytes string(const std::string& s) {
  Bytes out{kStringPrefix};
  out.insert(out.end(), s.begin(), s.end());
  out.push_back(0);
  return out;
}

Bytes name(const std::string& n, const Bytes& value) {
  Bytes out{kNameOp};
  append(out, name_string(n));
  append(out, value);
  return out;
}

Bytes package(const std::vector<Bytes>& elements) {
  Bytes body{static_cast<uint8_t>(elements.size())};
  for (const auto& e : elements) append(body, e);
  Bytes out{kPackageOp};
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

Bytes buffer(const Bytes& data) {
  Bytes body = integer(data.size());
  append(body, data);
  Bytes out{kBufferOp};
  append(out, pkg_length(body.size()));
  append(out, body);
  return out;
}

Bytes device(const std::string& n, const Bytes& body) {
  Bytes inner = name_string(n);
  append(inner, body);
  Bytes out{kExtOpPrefix, kDeviceOp};
  append(out, pkg_length(inner.size()));
  append(out, inner);
  return out;
}

Bytes scope(const std::string& n, const Bytes& body) {
  Bytes inner = name_string(n);
  append(inner, body);
  Bytes out{kScopeOp};
  append(out, pkg_length(inner.size()));
  append(out, inner);
  return out;
}

Bytes resource_template(const std::vector<Bytes>& descriptors) {
  Bytes data = concat(descriptors);
  data.push_back(0x79);  // end tag
  uint8_t sum = 0;
  for (uint8_t b : data) sum = static_cast<uint8_t>(sum + b);
  data.push_back(static_cast<uint8_t>(-sum));  // checksum: the template sums to zero
  return buffer(data);
}

Bytes memory32_fixed(uint32_t base, uint32_t len, bool writable) {
  Bytes out{0x86, 0x09, 0x00, static_cast<uint8_t>(writable ? 1 : 0)};
  le(out, base, 4);
  le(out, len, 4);
  return out;
}

Bytes qword_memory(uint64_t base, uint64_t len) {
  // ACPI 6.5 6.4.3.5.1: tag 0x8A, length 43; resource type 0 (memory); general flags
  // MAF|MIF|consumer; type flags cacheable (_MEM=1) + read-write; granularity 0; min; max;
  // translation 0; length.
  Bytes out{0x8A, 43, 0x00, 0x00, 0x0D, 0x03};
  le(out, 0, 8);
  le(out, base, 8);
  le(out, base + len - 1, 8);
  le(out, 0, 8);
  le(out, len, 8);
  return out;
}

Bytes io_port(uint16_t base, uint8_t len) {
  Bytes out{0x47, 0x01};  // small item "I/O port", decodes 16 address bits
  le(out, base, 2);       // minimum
  le(out, base, 2);       // maximum
  out.push_back(1);       // alignment
  out.push_back(len);
  return out;
}

Bytes interrupt(uint32_t gsi, bool level_triggered, bool active_low) {
  // Flags: bit0 consumer, bit1 edge-triggered, bit2 active-low, bit3 shared.
  uint8_t flags = 0x01 | (level_triggered ? 0 : 0x02) | (active_low ? 0x04 : 0);
  Bytes out{0x89, 0x06, 0x00, flags, 0x01};
  le(out, gsi, 4);
  return out;
}

Bytes concat(const std::vector<Bytes>& parts) {
  Bytes out;
  for (const auto& p : parts) append(out, p);
  return out;
}

}  // namespace gears::vmm::acpi::aml
