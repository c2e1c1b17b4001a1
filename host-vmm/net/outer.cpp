#include "net/outer.h"

#include <cstring>

namespace gears::vmm::net {

namespace {

constexpr uint16_t kEtherIpv4 = 0x0800;
constexpr uint16_t kEtherArp = 0x0806;
constexpr uint8_t kProtoUdp = 17;

void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  put16(p, static_cast<uint16_t>(v >> 16));
  put16(p + 2, static_cast<uint16_t>(v));
}
uint16_t get16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t get32(const uint8_t* p) { return uint32_t{get16(p)} << 16 | get16(p + 2); }

void put_eth(uint8_t* p, const MacAddress& dst, const MacAddress& src, uint16_t type) {
  std::memcpy(p, dst.bytes.data(), 6);
  std::memcpy(p + 6, src.bytes.data(), 6);
  put16(p + 12, type);
}

}  // namespace

uint16_t ipv4_checksum(std::span<const uint8_t> h) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < h.size(); i += 2) sum += get16(h.data() + i);
  if (h.size() % 2) sum += uint32_t{h.back()} << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

size_t build_udp_frame(const OuterAddrs& a, uint16_t ip_id, std::span<const uint8_t> payload,
                       std::span<uint8_t> out) {
  const size_t total = kOuterHeaders + payload.size();
  if (out.size() < total || payload.size() > 0xffff - 28) return 0;
  uint8_t* p = out.data();
  put_eth(p, a.dst_mac, a.src_mac, kEtherIpv4);
  uint8_t* ip = p + 14;
  ip[0] = 0x45;  // version 4, 20-byte header
  ip[1] = 0;
  put16(ip + 2, static_cast<uint16_t>(20 + 8 + payload.size()));
  put16(ip + 4, ip_id);
  put16(ip + 6, 0);  // no flags, offset 0
  ip[8] = 64;        // TTL
  ip[9] = kProtoUdp;
  put16(ip + 10, 0);
  put32(ip + 12, a.src.ip);
  put32(ip + 16, a.dst.ip);
  put16(ip + 10, ipv4_checksum(std::span<const uint8_t>(ip, 20)));
  uint8_t* udp = ip + 20;
  put16(udp, a.src.port);
  put16(udp + 2, a.dst.port);
  put16(udp + 4, static_cast<uint16_t>(8 + payload.size()));
  put16(udp + 6, 0);  // no checksum
  std::memcpy(udp + 8, payload.data(), payload.size());
  return total;
}

size_t build_arp_frame(const ArpPacket& arp, std::span<uint8_t> out) {
  if (out.size() < kArpFrame) return 0;
  uint8_t* p = out.data();
  put_eth(p, arp.op == kArpRequest ? MacAddress::broadcast() : arp.tha, arp.sha, kEtherArp);
  uint8_t* a = p + 14;
  put16(a, 1);  // Ethernet
  put16(a + 2, kEtherIpv4);
  a[4] = 6;
  a[5] = 4;
  put16(a + 6, arp.op);
  std::memcpy(a + 8, arp.sha.bytes.data(), 6);
  put32(a + 14, arp.sip);
  std::memcpy(a + 18, arp.tha.bytes.data(), 6);
  put32(a + 24, arp.tip);
  return kArpFrame;
}

OuterFrame parse_outer_frame(std::span<const uint8_t> f, const Endpoint& local) {
  OuterFrame r;
  if (f.size() < 14) {
    r.kind = OuterKind::kMalformed;
    return r;
  }
  const uint16_t type = get16(f.data() + 12);
  if (type == kEtherArp) {
    if (f.size() < kArpFrame) {
      r.kind = OuterKind::kMalformed;
      return r;
    }
    const uint8_t* a = f.data() + 14;
    if (get16(a) != 1 || get16(a + 2) != kEtherIpv4 || a[4] != 6 || a[5] != 4) return r;  // not IPv4-over-Ethernet
    r.kind = OuterKind::kArp;
    r.arp.op = get16(a + 6);
    r.arp.sha = MacAddress::from(std::span(a + 8, 6));
    r.arp.sip = get32(a + 14);
    r.arp.tha = MacAddress::from(std::span(a + 18, 6));
    r.arp.tip = get32(a + 24);
    return r;
  }
  if (type != kEtherIpv4) return r;
  const std::span<const uint8_t> ip = f.subspan(14);
  if (ip.size() < 20 || (ip[0] >> 4) != 4) {
    r.kind = OuterKind::kMalformed;
    return r;
  }
  const size_t ihl = size_t{ip[0] & 0xfu} * 4;
  const size_t total = get16(ip.data() + 2);
  // Ethernet pads short frames, so the IP length may be less than what arrived, never more.
  if (ihl < 20 || total < ihl || total > ip.size()) {
    r.kind = OuterKind::kMalformed;
    return r;
  }
  if (ip[9] != kProtoUdp || get32(ip.data() + 16) != local.ip) return r;
  if ((get16(ip.data() + 6) & 0x3fff) != 0) {  // MF set or a fragment offset
    r.kind = OuterKind::kMalformed;
    return r;
  }
  const std::span<const uint8_t> udp = ip.subspan(ihl, total - ihl);
  if (udp.size() < 8) {
    r.kind = OuterKind::kMalformed;
    return r;
  }
  const size_t ulen = get16(udp.data() + 4);
  if (get16(udp.data() + 2) != local.port) return r;
  if (ulen < 8 || ulen > udp.size()) {
    r.kind = OuterKind::kMalformed;
    return r;
  }
  r.kind = OuterKind::kOverlay;
  r.from = {get32(ip.data() + 12), get16(udp.data())};
  r.payload = udp.subspan(8, ulen - 8);
  return r;
}

}  // namespace gears::vmm::net
