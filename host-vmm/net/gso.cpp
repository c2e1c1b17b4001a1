#include "net/gso.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace gears::vmm::net {
namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherIpv6 = 0x86dd;
constexpr uint16_t kEtherVlan = 0x8100;
constexpr uint8_t kProtoTcp = 6;
constexpr size_t kTcpCsumOffset = 16;
constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

// Callers check bounds first; these only assemble big-endian fields.
uint16_t get16(std::span<const uint8_t> f, size_t at) {
  return static_cast<uint16_t>(f[at] << 8 | f[at + 1]);
}
uint32_t get32(std::span<const uint8_t> f, size_t at) {
  return uint32_t{get16(f, at)} << 16 | get16(f, at + 2);
}
void put16(std::span<uint8_t> f, size_t at, uint16_t v) {
  f[at] = static_cast<uint8_t>(v >> 8);
  f[at + 1] = static_cast<uint8_t>(v);
}
void put32(std::span<uint8_t> f, size_t at, uint32_t v) {
  put16(f, at, static_cast<uint16_t>(v >> 16));
  put16(f, at + 2, static_cast<uint16_t>(v));
}

// The checksum to store for a sum: complemented, with 0 sent as 0xffff (the same value in
// one's complement; UDP reserves 0 for "no checksum", so Linux never stores it).
uint16_t finish(uint32_t sum) {
  const auto c = static_cast<uint16_t>(~csum_fold(sum));
  return c == 0 ? 0xffff : c;
}

}  // namespace

uint32_t csum_add(std::span<const uint8_t> data, uint32_t sum) {
  // 32-bit big-endian words: 2^16 = 1 modulo 2^16 - 1, so their sum folds to the same
  // one's-complement sum as 16-bit words (RFC 1071, "parallel summation").
  uint64_t acc = sum;
  const uint8_t* p = data.data();
  const size_t n = data.size();
  size_t i = 0;
  for (; i + 4 <= n; i += 4) {
    uint32_t w;
    std::memcpy(&w, p + i, 4);
    acc += ntohl(w);
  }
  for (; i + 2 <= n; i += 2) acc += uint32_t{p[i]} << 8 | p[i + 1];
  if (i < n) acc += uint32_t{p[i]} << 8;
  acc = (acc & 0xffff'ffff) + (acc >> 32);
  acc = (acc & 0xffff'ffff) + (acc >> 32);
  return static_cast<uint32_t>(acc);
}

uint16_t csum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

std::string_view offload_error_name(OffloadError e) {
  switch (e) {
    case OffloadError::kNone: return "none";
    case OffloadError::kCsumRange: return "csum_range";
    case OffloadError::kGsoNoCsum: return "gso_no_csum";
    case OffloadError::kGsoSize: return "gso_size";
    case OffloadError::kGsoHdrLen: return "gso_hdr_len";
    case OffloadError::kGsoHeaders: return "gso_headers";
    case OffloadError::kGsoLength: return "gso_length";
    case OffloadError::kGsoCsumField: return "gso_csum_field";
    case OffloadError::kGsoEmpty: return "gso_empty";
  }
  return "unknown";
}

OffloadError check_offload(std::span<const uint8_t> f, const Offload& off, size_t max_segment_frame,
                           TcpLayout* layout) {
  const size_t n = f.size();
  if (off.needs_csum && (off.csum_start >= n || size_t{off.csum_start} + off.csum_offset + 2 > n))
    return OffloadError::kCsumRange;
  if (!off.is_gso()) return OffloadError::kNone;
  if (!off.needs_csum) return OffloadError::kGsoNoCsum;
  if (off.gso_size == 0) return OffloadError::kGsoSize;
  if (off.hdr_len > n) return OffloadError::kGsoHdrLen;

  TcpLayout l;
  if (n < 14) return OffloadError::kGsoHeaders;
  uint16_t type = get16(f, 12);
  l.l3 = 14;
  if (type == kEtherVlan) {
    if (n < 18) return OffloadError::kGsoHeaders;
    type = get16(f, 16);
    l.l3 = 18;
  }
  if (off.gso == Gso::kTcpV4) {
    if (type != kEtherIpv4 || n < l.l3 + 20) return OffloadError::kGsoHeaders;
    const size_t ihl = size_t{f[l.l3] & 0x0fu} * 4;
    if ((f[l.l3] >> 4) != 4 || ihl < 20 || n < l.l3 + ihl) return OffloadError::kGsoHeaders;
    if (f[l.l3 + 9] != kProtoTcp) return OffloadError::kGsoHeaders;
    if ((get16(f, l.l3 + 6) & 0x3fff) != 0) return OffloadError::kGsoHeaders;  // MF or offset: a fragment
    if (get16(f, l.l3 + 2) != n - l.l3) return OffloadError::kGsoLength;
    l.l4 = l.l3 + ihl;
  } else {
    if (type != kEtherIpv6 || n < l.l3 + 40) return OffloadError::kGsoHeaders;
    if ((f[l.l3] >> 4) != 6 || f[l.l3 + 6] != kProtoTcp) return OffloadError::kGsoHeaders;
    if (get16(f, l.l3 + 4) != n - l.l3 - 40) return OffloadError::kGsoLength;
    l.l4 = l.l3 + 40;
    l.v6 = true;
  }
  if (off.csum_start != l.l4 || off.csum_offset != kTcpCsumOffset) return OffloadError::kGsoCsumField;
  if (n < l.l4 + 20) return OffloadError::kGsoHeaders;
  const size_t doff = static_cast<size_t>(f[l.l4 + 12] >> 4) * 4;
  if (doff < 20 || n < l.l4 + doff) return OffloadError::kGsoHeaders;
  l.payload = l.l4 + doff;
  if (l.payload == n) return OffloadError::kGsoEmpty;
  if (l.payload + std::min<size_t>(off.gso_size, n - l.payload) > max_segment_frame)
    return OffloadError::kGsoSize;
  if (layout) *layout = l;
  return OffloadError::kNone;
}

bool complete_csum(std::span<uint8_t> f, uint16_t csum_start, uint16_t csum_offset) {
  if (csum_start >= f.size() || size_t{csum_start} + csum_offset + 2 > f.size()) return false;
  put16(f, size_t{csum_start} + csum_offset, finish(csum_add(f.subspan(csum_start))));
  return true;
}

OffloadError segment(std::span<const uint8_t> frame, const Offload& off, size_t max_segment_frame,
                     const SegmentSink& emit) {
  TcpLayout l;
  if (const OffloadError e = check_offload(frame, off, max_segment_frame, &l); e != OffloadError::kNone)
    return e;
  const size_t hlen = l.payload;
  const size_t total = frame.size() - hlen;
  const size_t mss = off.gso_size;
  std::vector<uint8_t> buf(hlen + std::min(mss, total));
  std::memcpy(buf.data(), frame.data(), hlen);
  const std::span<uint8_t> b(buf);
  const uint32_t seq0 = get32(frame, l.l4 + 4);
  const uint16_t id0 = get16(frame, l.l3 + 4);
  const uint8_t flags0 = frame[l.l4 + 13];
  // The pseudo-header's addresses are the same for every segment.
  const uint32_t addr_sum = l.v6 ? csum_add(frame.subspan(l.l3 + 8, 32)) : csum_add(frame.subspan(l.l3 + 12, 8));

  uint16_t i = 0;
  for (size_t done = 0; done < total; done += mss, ++i) {
    const size_t chunk = std::min(mss, total - done);
    const bool last = done + chunk == total;
    std::memcpy(buf.data() + hlen, frame.data() + hlen + done, chunk);
    if (!l.v6) {
      put16(b, l.l3 + 2, static_cast<uint16_t>(hlen - l.l3 + chunk));
      put16(b, l.l3 + 4, static_cast<uint16_t>(id0 + i));
      put16(b, l.l3 + 10, 0);
      put16(b, l.l3 + 10, static_cast<uint16_t>(~csum_fold(csum_add(b.subspan(l.l3, l.l4 - l.l3)))));
    } else {
      put16(b, l.l3 + 4, static_cast<uint16_t>(hlen - l.l3 - 40 + chunk));
    }
    put32(b, l.l4 + 4, seq0 + static_cast<uint32_t>(done));
    uint8_t flags = flags0;
    if (!last) flags &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (i != 0) flags &= static_cast<uint8_t>(~kTcpCwr);
    b[l.l4 + 13] = flags;
    const size_t tcp_len = hlen - l.l4 + chunk;
    put16(b, l.l4 + kTcpCsumOffset, 0);
    const uint32_t pseudo = addr_sum + kProtoTcp + static_cast<uint32_t>(tcp_len);
    put16(b, l.l4 + kTcpCsumOffset, finish(csum_add(b.subspan(l.l4, tcp_len), pseudo)));
    emit(b.first(hlen + chunk));
  }
  return OffloadError::kNone;
}

Resolution resolve(std::span<const uint8_t> frame, const Offload& off, const Accepts& dest,
                   size_t max_segment_frame, const FrameSink& emit) {
  if (off.plain()) {
    emit(frame, off);
    return Resolution::kAsIs;
  }
  TcpLayout l;
  if (check_offload(frame, off, max_segment_frame, &l) != OffloadError::kNone) return Resolution::kMalformed;
  Offload done;  // what resolved frames carry: checksums computed here
  done.data_valid = true;
  if (off.is_gso()) {
    const bool tso = off.gso == Gso::kTcpV4 ? dest.tso4 : dest.tso6;
    if (dest.csum && tso && (!off.gso_ecn || dest.ecn)) {
      Offload as_is = off;
      as_is.hdr_len = static_cast<uint16_t>(l.payload);
      as_is.data_valid = false;
      emit(frame, as_is);
      return Resolution::kAsIs;
    }
    segment(frame, off, max_segment_frame, [&](std::span<const uint8_t> s) { emit(s, done); });
    return Resolution::kSegmented;
  }
  if (dest.csum) {
    Offload as_is = off;
    as_is.data_valid = false;
    emit(frame, as_is);
    return Resolution::kAsIs;
  }
  std::vector<uint8_t> copy(frame.begin(), frame.end());
  complete_csum(copy, off.csum_start, off.csum_offset);
  emit(copy, done);
  return Resolution::kCsumCompleted;
}

}  // namespace gears::vmm::net
