// Test helpers for offloads: builders of Ethernet [+ 802.1Q] + IPv4/IPv6 + TCP/UDP frames, and an
// independent checker. The checker's checksum is RFC 1071 as written (byte pairs, 32-bit
// accumulator, end-around carry) and shares no code with net/gso.cpp, so a test that passes
// compares the device's arithmetic against a second implementation.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "net/offload.h"
#include "net_test_util.h"

namespace gears::vmm::net::test {

inline uint16_t ref_sum16(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(sum);
}

inline uint16_t rd16(const Bytes& b, size_t at) { return static_cast<uint16_t>(b.at(at) << 8 | b.at(at + 1)); }
inline uint32_t rd32(const Bytes& b, size_t at) { return uint32_t{rd16(b, at)} << 16 | rd16(b, at + 2); }
inline void wr16(Bytes& b, size_t at, uint16_t v) {
  b.at(at) = static_cast<uint8_t>(v >> 8);
  b.at(at + 1) = static_cast<uint8_t>(v);
}
inline void wr32(Bytes& b, size_t at, uint32_t v) {
  wr16(b, at, static_cast<uint16_t>(v >> 16));
  wr16(b, at + 2, static_cast<uint16_t>(v));
}

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kPsh = 0x08, kAck = 0x10, kEce = 0x40, kCwr = 0x80;

struct PacketSpec {
  bool v6 = false;
  bool vlan = false;
  bool udp = false;       // UDP instead of TCP (for checksum offload)
  size_t payload = 1000;
  size_t ip_opts = 0;     // IPv4 option bytes (multiple of 4)
  size_t tcp_opts = 12;   // TCP option bytes (multiple of 4), e.g. timestamps
  uint32_t seq = 0x01020304;
  uint8_t flags = kAck | kPsh;
  uint16_t ip_id = 0xfff0;  // near the wrap, so a segmenter must wrap it
  uint8_t fill = 0;       // payload pattern seed
};

struct Packet {
  Bytes frame;
  size_t l3 = 0, l4 = 0, payload = 0;
  bool v6 = false, udp = false;
};

// Sum of the pseudo header for an L4 segment of `l4_len` bytes (the checker's own version).
inline uint32_t ref_pseudo(const Bytes& f, size_t l3, bool v6, uint8_t proto, size_t l4_len) {
  uint32_t s = v6 ? ref_sum16(f.data() + l3 + 8, 32) : ref_sum16(f.data() + l3 + 12, 8);
  return s + proto + static_cast<uint32_t>(l4_len);
}

// The L4 checksum field value the packet should carry.
inline uint16_t ref_l4_csum(const Bytes& f, size_t l3, size_t l4, bool v6, bool udp) {
  Bytes copy = f;
  const size_t field = l4 + (udp ? 6 : 16);
  wr16(copy, field, 0);
  const uint16_t s = ref_sum16(copy.data() + l4, copy.size() - l4,
                               ref_pseudo(copy, l3, v6, udp ? 17 : 6, copy.size() - l4));
  const auto c = static_cast<uint16_t>(~s);
  return c == 0 ? 0xffff : c;
}

// A well-formed frame with correct checksums everywhere.
inline Packet build_packet(const PacketSpec& s) {
  Packet p;
  p.v6 = s.v6;
  p.udp = s.udp;
  Bytes& f = p.frame;
  const MacAddress d = mac(2), src = mac(1);
  f.insert(f.end(), d.bytes.begin(), d.bytes.end());
  f.insert(f.end(), src.bytes.begin(), src.bytes.end());
  if (s.vlan) f.insert(f.end(), {0x81, 0x00, 0x00, 0x07});
  f.insert(f.end(), {static_cast<uint8_t>(s.v6 ? 0x86 : 0x08), static_cast<uint8_t>(s.v6 ? 0xdd : 0x00)});
  p.l3 = f.size();
  const size_t l4_hdr = s.udp ? 8 : 20 + s.tcp_opts;
  const size_t l4_len = l4_hdr + s.payload;
  const uint8_t proto = s.udp ? 17 : 6;
  if (!s.v6) {
    const size_t ihl = 20 + s.ip_opts;
    f.resize(p.l3 + ihl);
    f[p.l3] = static_cast<uint8_t>(0x40 | ihl / 4);
    wr16(f, p.l3 + 2, static_cast<uint16_t>(ihl + l4_len));
    wr16(f, p.l3 + 4, s.ip_id);
    wr16(f, p.l3 + 6, 0x4000);  // DF
    f[p.l3 + 8] = 64;
    f[p.l3 + 9] = proto;
    wr32(f, p.l3 + 12, 0x0a000001);
    wr32(f, p.l3 + 16, 0x0a000002);
    for (size_t i = 20; i < ihl; ++i) f[p.l3 + i] = 1;  // NOP options
    wr16(f, p.l3 + 10, static_cast<uint16_t>(~ref_sum16(f.data() + p.l3, ihl)));
  } else {
    f.resize(p.l3 + 40);
    f[p.l3] = 0x60;
    wr16(f, p.l3 + 4, static_cast<uint16_t>(l4_len));
    f[p.l3 + 6] = proto;
    f[p.l3 + 7] = 64;
    for (size_t i = 0; i < 16; ++i) {
      f[p.l3 + 8 + i] = static_cast<uint8_t>(0xfd + i);
      f[p.l3 + 24 + i] = static_cast<uint8_t>(0x20 + 3 * i);
    }
  }
  p.l4 = f.size();
  f.resize(p.l4 + l4_hdr);
  wr16(f, p.l4, 40000);
  wr16(f, p.l4 + 2, 5001);
  if (s.udp) {
    wr16(f, p.l4 + 4, static_cast<uint16_t>(l4_len));
  } else {
    wr32(f, p.l4 + 4, s.seq);
    wr32(f, p.l4 + 8, 0xa0b0c0d0);
    f[p.l4 + 12] = static_cast<uint8_t>((l4_hdr / 4) << 4);
    f[p.l4 + 13] = s.flags;
    wr16(f, p.l4 + 14, 502);
    for (size_t i = 20; i < l4_hdr; ++i) f[p.l4 + i] = i == 20 ? 8 : 0x11;  // option bytes
  }
  p.payload = f.size();
  for (size_t i = 0; i < s.payload; ++i) f.push_back(static_cast<uint8_t>(s.fill + i * 7 + (i >> 8)));
  wr16(f, p.l4 + (s.udp ? 6 : 16), ref_l4_csum(f, p.l3, p.l4, s.v6, s.udp));
  return p;
}

// What Linux hands a NIC with CSUM: the L4 checksum field holds the pseudo-header sum only.
inline Offload make_partial(Packet& p) {
  const size_t field = p.l4 + (p.udp ? 6 : 16);
  wr16(p.frame, field, ref_sum16(nullptr, 0, ref_pseudo(p.frame, p.l3, p.v6, p.udp ? 17 : 6, p.frame.size() - p.l4)));
  Offload o;
  o.needs_csum = true;
  o.csum_start = static_cast<uint16_t>(p.l4);
  o.csum_offset = p.udp ? 6 : 16;
  return o;
}

// A TSO frame as Linux sends it: partial checksum (pseudo header over the whole length).
inline Offload make_tso(Packet& p, uint16_t mss) {
  Offload o = make_partial(p);
  o.gso = p.v6 ? Gso::kTcpV6 : Gso::kTcpV4;
  o.gso_size = mss;
  o.hdr_len = static_cast<uint16_t>(p.payload);
  return o;
}

// An independent check of one TCP frame: lengths agree with the frame, the IPv4 header checksum
// and the TCP checksum verify. Returns "" or what is wrong.
struct TcpFields {
  uint32_t seq = 0;
  uint8_t flags = 0;
  uint16_t ip_id = 0;
  size_t payload_off = 0;
  size_t payload_len = 0;
};
inline std::string check_tcp_frame(const Bytes& f, bool v6, size_t l3, TcpFields* out) {
  if (f.size() < l3 + (v6 ? 40 : 20)) return "short";
  size_t l4;
  if (!v6) {
    const size_t ihl = size_t(f[l3] & 15) * 4;
    if (rd16(f, l3 + 2) != f.size() - l3) return "ipv4 total length " + std::to_string(rd16(f, l3 + 2));
    if (ref_sum16(f.data() + l3, ihl) != 0xffff) return "ipv4 header checksum";
    if (out) out->ip_id = rd16(f, l3 + 4);
    l4 = l3 + ihl;
  } else {
    if (rd16(f, l3 + 4) != f.size() - l3 - 40) return "ipv6 payload length";
    l4 = l3 + 40;
  }
  const uint16_t s = ref_sum16(f.data() + l4, f.size() - l4, ref_pseudo(f, l3, v6, 6, f.size() - l4));
  if (s != 0xffff) return "tcp checksum";
  if (out) {
    out->seq = rd32(f, l4 + 4);
    out->flags = f[l4 + 13];
    out->payload_off = l4 + size_t(f[l4 + 12] >> 4) * 4;
    out->payload_len = f.size() - out->payload_off;
  }
  return "";
}

}  // namespace gears::vmm::net::test
