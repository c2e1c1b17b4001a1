// Outer Ethernet/IPv4/UDP headers and ARP (net/outer.h), used by backends that own a port.
#include "net/outer.h"

#include <gtest/gtest.h>

#include "net_test_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::mac;

const Endpoint kUs{0x0a000002, 7878};
const Endpoint kPeer{0x0a000001, 40000};

Bytes udp_frame(const Bytes& payload, const Endpoint& to = kUs) {
  Bytes f(kOuterHeaders + payload.size());
  EXPECT_EQ(build_udp_frame({mac(1), mac(2), kPeer, to}, 7, payload, f), f.size());
  return f;
}

TEST(Outer, UdpRoundTrip) {
  const Bytes payload = {1, 2, 3, 4, 5};
  const Bytes f = udp_frame(payload);
  EXPECT_EQ(f[12], 0x08);
  EXPECT_EQ(f[13], 0x00);
  EXPECT_EQ(ipv4_checksum(std::span(f.data() + 14, 20)), 0);  // a valid header sums to 0
  auto o = parse_outer_frame(f, kUs);
  ASSERT_EQ(o.kind, OuterKind::kOverlay);
  EXPECT_EQ(o.from, kPeer);
  EXPECT_EQ(Bytes(o.payload.begin(), o.payload.end()), payload);
}

TEST(Outer, PaddedShortFrameKeepsItsPayload) {
  Bytes f = udp_frame({9});
  f.resize(60, 0);  // Ethernet minimum: trailing padding is not payload
  auto o = parse_outer_frame(f, kUs);
  ASSERT_EQ(o.kind, OuterKind::kOverlay);
  EXPECT_EQ(o.payload.size(), 1u);
}

TEST(Outer, OtherTrafficIsIgnored) {
  EXPECT_EQ(parse_outer_frame(udp_frame({1}, {0x0a000003, 7878}), kUs).kind, OuterKind::kNotForUs);
  EXPECT_EQ(parse_outer_frame(udp_frame({1}, {kUs.ip, 53}), kUs).kind, OuterKind::kNotForUs);
  Bytes v6 = udp_frame({1});
  v6[12] = 0x86;
  v6[13] = 0xdd;
  EXPECT_EQ(parse_outer_frame(v6, kUs).kind, OuterKind::kNotForUs);
}

TEST(Outer, MalformedHeadersAreReported) {
  EXPECT_EQ(parse_outer_frame(Bytes(10, 0), kUs).kind, OuterKind::kMalformed);
  Bytes f = udp_frame({1, 2, 3});
  Bytes t = f;
  t.resize(30);  // truncated IPv4 header
  EXPECT_EQ(parse_outer_frame(t, kUs).kind, OuterKind::kMalformed);
  Bytes big = f;
  big[14 + 2] = 0x05;  // IP total length beyond the frame
  EXPECT_EQ(parse_outer_frame(big, kUs).kind, OuterKind::kMalformed);
  Bytes frag = f;
  frag[14 + 6] = 0x20;  // more fragments
  EXPECT_EQ(parse_outer_frame(frag, kUs).kind, OuterKind::kMalformed);
  Bytes ulen = f;
  ulen[14 + 20 + 5] = 0xff;  // UDP length beyond the IP payload
  EXPECT_EQ(parse_outer_frame(ulen, kUs).kind, OuterKind::kMalformed);
  Bytes ihl = f;
  ihl[14] = 0x44;  // header length 16
  EXPECT_EQ(parse_outer_frame(ihl, kUs).kind, OuterKind::kMalformed);
}

TEST(Outer, ArpRoundTrip) {
  Bytes f(kArpFrame);
  ASSERT_EQ(build_arp_frame({kArpRequest, mac(1), kPeer.ip, MacAddress{}, kUs.ip}, f), kArpFrame);
  EXPECT_EQ(MacAddress::from(std::span(f.data(), 6)), MacAddress::broadcast());
  auto o = parse_outer_frame(f, kUs);
  ASSERT_EQ(o.kind, OuterKind::kArp);
  EXPECT_EQ(o.arp.op, kArpRequest);
  EXPECT_EQ(o.arp.sha, mac(1));
  EXPECT_EQ(o.arp.sip, kPeer.ip);
  EXPECT_EQ(o.arp.tip, kUs.ip);
  ASSERT_EQ(build_arp_frame({kArpReply, mac(2), kUs.ip, mac(1), kPeer.ip}, f), kArpFrame);
  EXPECT_EQ(MacAddress::from(std::span(f.data(), 6)), mac(1));
  EXPECT_EQ(parse_outer_frame(std::span(f.data(), 30), kUs).kind, OuterKind::kMalformed);
}

}  // namespace
}  // namespace gears::vmm::net
