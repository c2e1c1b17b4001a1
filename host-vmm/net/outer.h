// Outer headers for backends that own an Ethernet port themselves (DPDK): an overlay payload
// wrapped in Ethernet + IPv4 + UDP, received frames parsed back, and the ARP a host needs to be
// reachable at its overlay IP. Plain byte code, no DPDK, so it is unit-tested everywhere.
//
// Limits: IPv4 without options on transmit, options accepted on receive; no fragments (a
// fragment is counted as malformed: peers must send packets that fit the link); UDP checksum
// 0 on transmit (allowed for IPv4), not verified on receive (the overlay header is checked).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "net/address.h"

namespace gears::vmm::net {

inline constexpr size_t kOuterHeaders = 14 + 20 + 8;  // Ethernet, IPv4, UDP
inline constexpr size_t kArpFrame = 14 + 28;

struct OuterAddrs {
  MacAddress src_mac, dst_mac;
  Endpoint src, dst;
};

// Ethernet/IPv4/UDP around `payload` into `out`; returns the frame size, 0 if it does not fit.
size_t build_udp_frame(const OuterAddrs& a, uint16_t ip_id, std::span<const uint8_t> payload,
                       std::span<uint8_t> out);

struct ArpPacket {
  uint16_t op = 0;  // 1 request, 2 reply
  MacAddress sha;
  uint32_t sip = 0;  // host byte order
  MacAddress tha;
  uint32_t tip = 0;
};
inline constexpr uint16_t kArpRequest = 1;
inline constexpr uint16_t kArpReply = 2;

// An Ethernet/IPv4 ARP frame; requests go to broadcast, replies to `arp.tha`.
size_t build_arp_frame(const ArpPacket& arp, std::span<uint8_t> out);

enum class OuterKind {
  kOverlay,    // UDP to our IP and port: `payload` is an overlay packet from `from`
  kArp,        // `arp` is valid
  kNotForUs,   // other traffic (other IPs, ports, protocols, ethertypes): ignored
  kMalformed,  // truncated or inconsistent headers, fragments
};

struct OuterFrame {
  OuterKind kind = OuterKind::kNotForUs;
  Endpoint from;
  std::span<const uint8_t> payload;
  ArpPacket arp;
};

OuterFrame parse_outer_frame(std::span<const uint8_t> frame, const Endpoint& local);

uint16_t ipv4_checksum(std::span<const uint8_t> header);

}  // namespace gears::vmm::net
