// net/gso.h: checksum completion and software TCP segmentation, every result checked by the
// independent checker of packet_util.h; each malformed offload field refused for its reason.
#include "net/gso.h"

#include <gtest/gtest.h>

#include <random>

#include "gears/abi/overlay.h"
#include "packet_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::build_packet;
using test::check_tcp_frame;
using test::make_partial;
using test::make_tso;
using test::Packet;
using test::PacketSpec;
using test::TcpFields;

constexpr size_t kMaxFrame = 1500 + 18;

TEST(Checksum, MatchesReferenceForEveryLengthAndSeed) {
  std::mt19937 rng(7);
  for (size_t n = 0; n < 300; ++n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    const uint32_t seed = rng() & 0xffff;
    EXPECT_EQ(csum_fold(csum_add(b, seed)), test::ref_sum16(b.data(), b.size(), seed)) << n;
  }
  // All ones stays all ones; chaining even-length pieces equals one pass.
  Bytes ff(64, 0xff);
  EXPECT_EQ(csum_fold(csum_add(ff)), 0xffff);
  Bytes big(65536);
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<uint8_t>(i * 31 + (i >> 9));
  const uint32_t one = csum_add(big);
  const uint32_t two = csum_add(std::span(big).subspan(1000), csum_add(std::span(big).first(1000)));
  EXPECT_EQ(csum_fold(one), csum_fold(two));
  EXPECT_EQ(csum_fold(one), test::ref_sum16(big.data(), big.size()));
}

TEST(Checksum, CompletesPartialTcpAndUdpLikeTheReference) {
  for (bool v6 : {false, true}) {
    for (bool udp : {false, true}) {
      for (size_t payload : {0u, 1u, 2u, 3u, 517u, 1400u}) {
        PacketSpec s;
        s.v6 = v6;
        s.udp = udp;
        s.payload = payload;
        Packet p = build_packet(s);
        const Bytes want = p.frame;  // built with the reference checksum
        const Offload o = make_partial(p);
        ASSERT_NE(p.frame, want);
        ASSERT_EQ(check_offload(p.frame, o, kMaxFrame), OffloadError::kNone);
        ASSERT_TRUE(complete_csum(p.frame, o.csum_start, o.csum_offset));
        EXPECT_EQ(p.frame, want) << "v6 " << v6 << " udp " << udp << " payload " << payload;
      }
    }
  }
}

TEST(Checksum, RefusesARangeOutsideTheFrame) {
  Packet p = build_packet({});
  const Bytes before = p.frame;
  const auto n = static_cast<uint16_t>(p.frame.size());
  EXPECT_FALSE(complete_csum(p.frame, n, 0));
  EXPECT_FALSE(complete_csum(p.frame, static_cast<uint16_t>(n - 1), 0));  // field would end past the frame
  EXPECT_FALSE(complete_csum(p.frame, 14, static_cast<uint16_t>(n - 15)));
  EXPECT_FALSE(complete_csum(p.frame, 0xffff, 0xffff));
  EXPECT_EQ(p.frame, before);
  EXPECT_TRUE(complete_csum(p.frame, 14, static_cast<uint16_t>(n - 16)));  // exactly the last two bytes
}

// Segments `p` and checks every segment independently: lengths, checksums, seq, flags, id,
// payload bytes, and the sizes against the MSS.
void expect_segmentation(const PacketSpec& s, uint16_t mss) {
  Packet p = build_packet(s);
  const Bytes orig = p.frame;
  const Offload o = make_tso(p, mss);
  std::vector<Bytes> segs;
  ASSERT_EQ(segment(p.frame, o, kMaxFrame, [&](std::span<const uint8_t> f) { segs.emplace_back(f.begin(), f.end()); }),
            OffloadError::kNone);
  const size_t expect_n = (s.payload + mss - 1) / mss;
  ASSERT_EQ(segs.size(), expect_n);
  size_t off = 0;
  for (size_t i = 0; i < segs.size(); ++i) {
    SCOPED_TRACE("segment " + std::to_string(i));
    const Bytes& g = segs[i];
    TcpFields t;
    ASSERT_EQ(check_tcp_frame(g, s.v6, p.l3, &t), "");
    EXPECT_LE(g.size(), kMaxFrame);
    const size_t want_len = std::min<size_t>(mss, s.payload - off);
    ASSERT_EQ(t.payload_len, want_len);
    EXPECT_EQ(t.payload_off, p.payload);
    EXPECT_TRUE(std::equal(g.begin() + static_cast<long>(t.payload_off), g.end(),
                           orig.begin() + static_cast<long>(p.payload + off)));
    EXPECT_EQ(t.seq, static_cast<uint32_t>(s.seq + off));
    const bool last = i + 1 == segs.size();
    uint8_t want_flags = s.flags;
    if (!last) want_flags &= static_cast<uint8_t>(~(test::kFin | test::kPsh));
    if (i != 0) want_flags &= static_cast<uint8_t>(~test::kCwr);
    EXPECT_EQ(t.flags, want_flags);
    if (!s.v6) {
      EXPECT_EQ(t.ip_id, static_cast<uint16_t>(s.ip_id + i));
    }
    // Everything else in the headers is the original's.
    EXPECT_TRUE(std::equal(g.begin(), g.begin() + static_cast<long>(p.l3), orig.begin()));
    off += want_len;
  }
  EXPECT_EQ(off, s.payload);
}

TEST(Segmentation, Ipv4Tcp) {
  PacketSpec s;
  s.payload = 60000;
  s.flags = test::kAck | test::kPsh | test::kFin | test::kCwr | test::kEce;
  expect_segmentation(s, 1448);
}

TEST(Segmentation, Ipv4TcpWithOptionsVlanAndAShortLastSegment) {
  PacketSpec s;
  s.vlan = true;
  s.ip_opts = 8;
  s.tcp_opts = 20;
  s.payload = 10001;
  expect_segmentation(s, 1000);
}

TEST(Segmentation, Ipv6Tcp) {
  PacketSpec s;
  s.v6 = true;
  s.payload = 65535 - 40 - 32;  // the largest IPv6 payload length
  s.flags = test::kAck | test::kPsh | test::kCwr;
  expect_segmentation(s, 1428);
}

TEST(Segmentation, OneSegmentAndOddMss) {
  PacketSpec s;
  s.payload = 700;
  expect_segmentation(s, 1448);  // smaller than the MSS: one segment, still completed
  s.payload = 5000;
  expect_segmentation(s, 333);
}

TEST(Segmentation, MaximalIpv4Frame) {
  PacketSpec s;
  s.payload = 65535 - 20 - 32;
  s.seq = 0xffffff00;  // sequence numbers wrap
  expect_segmentation(s, 1448);
}

// Every way an offload can disagree with its frame, each refused for its own reason.
TEST(CheckOffload, EachMalformedFieldIsRefused) {
  auto err = [](const Packet& p, const Offload& o) { return check_offload(p.frame, o, kMaxFrame); };
  Packet p = build_packet({.payload = 4000});
  const Offload good = make_tso(p, 1448);
  ASSERT_EQ(err(p, good), OffloadError::kNone);

  Offload o = good;
  o.needs_csum = false;
  EXPECT_EQ(err(p, o), OffloadError::kGsoNoCsum);
  o = good;
  o.gso_size = 0;
  EXPECT_EQ(err(p, o), OffloadError::kGsoSize);
  o = good;
  o.gso_size = 1500;  // 14 + 20 + 32 + 1500 > 1518
  EXPECT_EQ(err(p, o), OffloadError::kGsoSize);
  o = good;
  o.hdr_len = static_cast<uint16_t>(p.frame.size() + 1);
  EXPECT_EQ(err(p, o), OffloadError::kGsoHdrLen);
  o = good;
  o.gso = Gso::kTcpV6;  // an IPv4 packet declared as IPv6
  EXPECT_EQ(err(p, o), OffloadError::kGsoHeaders);
  o = good;
  o.csum_offset = 6;  // not the TCP checksum
  EXPECT_EQ(err(p, o), OffloadError::kGsoCsumField);
  o = good;
  o.csum_start = static_cast<uint16_t>(p.l4 + 4);
  EXPECT_EQ(err(p, o), OffloadError::kGsoCsumField);
  o = good;
  o.csum_start = static_cast<uint16_t>(p.frame.size());
  EXPECT_EQ(err(p, o), OffloadError::kCsumRange);

  auto mutate = [&](auto edit) {
    Packet q = p;
    edit(q.frame);
    return err(q, good);
  };
  EXPECT_EQ(mutate([&](Bytes& f) { f.pop_back(); }), OffloadError::kGsoLength);          // IP length > frame
  EXPECT_EQ(mutate([&](Bytes& f) { f.push_back(0); }), OffloadError::kGsoLength);        // trailing bytes
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l3 + 9] = 17; }), OffloadError::kGsoHeaders);     // UDP
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l3] = 0x44; }), OffloadError::kGsoHeaders);       // IHL 16 bytes
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l3] = 0x65; }), OffloadError::kGsoHeaders);       // version 6
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l3 + 6] = 0x20; }), OffloadError::kGsoHeaders);   // MF: a fragment
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l3 + 7] = 0x01; }), OffloadError::kGsoHeaders);   // fragment offset
  EXPECT_EQ(mutate([&](Bytes& f) { f[12] = 0x86; f[13] = 0xdd; }), OffloadError::kGsoHeaders);
  EXPECT_EQ(mutate([&](Bytes& f) { f[p.l4 + 12] = 0x40; }), OffloadError::kGsoHeaders);  // TCP doff 16 bytes
  Packet tiny = build_packet({.payload = 0});
  Offload t = make_tso(tiny, 1000);
  EXPECT_EQ(err(tiny, t), OffloadError::kGsoEmpty);
  Bytes hdr_only(p.frame.begin(), p.frame.begin() + 20);
  EXPECT_EQ(check_offload(hdr_only, good, kMaxFrame), OffloadError::kCsumRange);
  Offload no_csum_range = good;
  no_csum_range.csum_start = 14;
  EXPECT_EQ(check_offload(Bytes(10, 0), no_csum_range, kMaxFrame), OffloadError::kCsumRange);

  // IPv6: next header not TCP (an extension header), payload length wrong.
  Packet v6 = build_packet({.v6 = true, .payload = 3000});
  const Offload good6 = make_tso(v6, 1400);
  ASSERT_EQ(check_offload(v6.frame, good6, kMaxFrame), OffloadError::kNone);
  Packet q = v6;
  q.frame[v6.l3 + 6] = 0;  // hop-by-hop options
  EXPECT_EQ(check_offload(q.frame, good6, kMaxFrame), OffloadError::kGsoHeaders);
  q = v6;
  q.frame[v6.l3 + 5] ^= 1;
  EXPECT_EQ(check_offload(q.frame, good6, kMaxFrame), OffloadError::kGsoLength);
  Offload as4 = good6;
  as4.gso = Gso::kTcpV4;
  EXPECT_EQ(check_offload(v6.frame, as4, kMaxFrame), OffloadError::kGsoHeaders);
  // Nothing is emitted for a refused frame.
  int emitted = 0;
  EXPECT_EQ(segment(q.frame, good6, kMaxFrame, [&](std::span<const uint8_t>) { ++emitted; }), OffloadError::kGsoLength);
  EXPECT_EQ(emitted, 0);
}

// Garbage frames with plausible offload fields: no crash, no read outside the frame (the
// sanitizer builds catch that), and every segment emitted is a valid TCP frame.
TEST(CheckOffload, RandomFramesNeverEscape) {
  std::mt19937_64 rng(99);
  int segmented = 0;
  for (int round = 0; round < 3000; ++round) {
    Packet p = build_packet({.v6 = (rng() & 1) != 0, .vlan = (rng() & 3) == 0, .payload = rng() % 6000});
    Offload o = make_tso(p, static_cast<uint16_t>(1 + rng() % 1600));
    for (int k = static_cast<int>(rng() % 4); k > 0; --k) {
      switch (rng() % 6) {
        case 0: p.frame[rng() % p.frame.size()] = static_cast<uint8_t>(rng()); break;
        case 1: p.frame.resize(rng() % (p.frame.size() + 1)); break;
        case 2: o.csum_start = static_cast<uint16_t>(rng()); break;
        case 3: o.csum_offset = static_cast<uint16_t>(rng() % 64); break;
        case 4: o.hdr_len = static_cast<uint16_t>(rng()); break;
        default: o.gso_size = static_cast<uint16_t>(rng()); break;
      }
    }
    const bool v6 = o.gso == Gso::kTcpV6;
    const OffloadError e = segment(p.frame, o, kMaxFrame, [&](std::span<const uint8_t> f) {
      ASSERT_LE(f.size(), kMaxFrame);
      const size_t l3 = f[12] == 0x81 && f[13] == 0 ? 18 : 14;
      ASSERT_EQ(check_tcp_frame(Bytes(f.begin(), f.end()), v6, l3, nullptr), "");
    });
    if (e == OffloadError::kNone) ++segmented;
  }
  EXPECT_GT(segmented, 100);
}

TEST(Resolve, WhatEachDestinationGets) {
  Packet p = build_packet({.payload = 5000});
  const Bytes complete = p.frame;
  const Offload tso = make_tso(p, 1448);
  struct Got {
    std::vector<Bytes> frames;
    std::vector<Offload> offs;
  };
  auto run = [&](const Bytes& f, const Offload& o, Accepts a, Got& g) {
    return resolve(f, o, a, kMaxFrame, [&](std::span<const uint8_t> x, const Offload& y) {
      g.frames.emplace_back(x.begin(), x.end());
      g.offs.push_back(y);
    });
  };
  // A GSO-capable destination takes the frame as it is, hdr_len set to the real headers.
  Got whole;
  Offload hint = tso;
  hint.hdr_len = 0;  // a driver's hint may be anything inside the frame
  EXPECT_EQ(run(p.frame, hint, {.csum = true, .tso4 = true}, whole), Resolution::kAsIs);
  ASSERT_EQ(whole.frames.size(), 1u);
  EXPECT_EQ(whole.frames[0], p.frame);
  EXPECT_TRUE(whole.offs[0].is_gso());
  EXPECT_EQ(whole.offs[0].hdr_len, p.payload);
  // Without TSO4 (or with only TSO6, or an ECN frame without ECN): segments, each DATA_VALID.
  for (Accepts a : {Accepts{}, Accepts{.csum = true}, Accepts{.csum = true, .tso6 = true}}) {
    Got g;
    EXPECT_EQ(run(p.frame, tso, a, g), Resolution::kSegmented);
    ASSERT_EQ(g.frames.size(), 4u);
    for (size_t i = 0; i < g.frames.size(); ++i) {
      EXPECT_EQ(check_tcp_frame(g.frames[i], false, p.l3, nullptr), "");
      EXPECT_TRUE(g.offs[i].plain());
      EXPECT_TRUE(g.offs[i].data_valid);
    }
  }
  Offload ecn = tso;
  ecn.gso_ecn = true;
  Got g_ecn;
  EXPECT_EQ(run(p.frame, ecn, {.csum = true, .tso4 = true}, g_ecn), Resolution::kSegmented);
  Got g_ecn_ok;
  EXPECT_EQ(run(p.frame, ecn, {.csum = true, .tso4 = true, .ecn = true}, g_ecn_ok), Resolution::kAsIs);

  // A partial checksum: as it is for a csum-capable destination, completed in a copy otherwise.
  Packet u = build_packet({.udp = true, .payload = 300});
  const Bytes u_complete = u.frame;
  const Offload partial = make_partial(u);
  Got keep, done;
  EXPECT_EQ(run(u.frame, partial, {.csum = true}, keep), Resolution::kAsIs);
  EXPECT_EQ(keep.frames[0], u.frame);
  EXPECT_TRUE(keep.offs[0].needs_csum);
  EXPECT_EQ(run(u.frame, partial, {}, done), Resolution::kCsumCompleted);
  EXPECT_EQ(done.frames[0], u_complete);
  EXPECT_TRUE(done.offs[0].data_valid && !done.offs[0].needs_csum);
  // Malformed: nothing emitted.
  Got bad;
  Offload broken = tso;
  broken.csum_offset = 2;
  EXPECT_EQ(run(p.frame, broken, {}, bad), Resolution::kMalformed);
  EXPECT_TRUE(bad.frames.empty());
  // A plain frame passes untouched.
  Got plain;
  EXPECT_EQ(run(complete, Offload{}, {}, plain), Resolution::kAsIs);
  EXPECT_EQ(plain.frames[0], complete);
}

}  // namespace
}  // namespace gears::vmm::net
