// virtio-net's offloads through VirtioMmioTransport, as Linux's virtio_net negotiates them:
// checksum and TSO transmit (the header checked against the frame, every malformed field
// counted), receive of whole GSO frames, segments and completed checksums depending on what
// the driver negotiated, random headers, and two guests on one switch plus a peer host.
// Mergeable buffers and EVENT_IDX: virtio_net_rx_test.cpp.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <random>

#include "net/encap.h"
#include "net/switch.h"
#include "net_guest_util.h"
#include "net_test_util.h"
#include "packet_util.h"
#include "virtio/mmio_transport.h"
#include "virtio/net.h"
#include "virtio/net_hdr.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

using net::Gso;
using net::Offload;
using net::test::Bytes;
using net::test::build_packet;
using net::test::check_tcp_frame;
using net::test::make_partial;
using net::test::make_tso;
using net::test::Packet;
using net::test::PacketSpec;
using net::test::TcpFields;
using test::Guest;
using test::OffloadTest;
using test::tso_hdr;
using test::f;
using test::kBase;
using test::kCsumBoth;
using test::kLinux;
using T = VirtioMmioTransport;

TEST_F(OffloadTest, TransmitsPartialChecksumsAndTsoFramesAsTheyAre) {
  g.start(port, kLinux);
  Packet udp = build_packet({.udp = true, .payload = 900});
  const Offload partial = make_partial(udp);
  g.transmit(tso_hdr(partial), udp.frame);
  Packet v4 = build_packet({.payload = 65535 - 20 - 32});  // the largest IPv4 TSO frame
  const Offload tso4 = make_tso(v4, 1448);
  g.transmit(tso_hdr(tso4), v4.frame, 17);
  Packet v6 = build_packet({.v6 = true, .payload = 30000, .flags = net::test::kAck | net::test::kCwr});
  Offload tso6 = make_tso(v6, 1428);
  tso6.gso_ecn = true;
  g.transmit(tso_hdr(tso6), v6.frame);

  ASSERT_EQ(port->sent.size(), 3u);
  EXPECT_EQ(port->sent[0], udp.frame);
  EXPECT_TRUE(port->sent_offloads[0].needs_csum);
  EXPECT_EQ(port->sent_offloads[0].csum_start, partial.csum_start);
  EXPECT_EQ(port->sent_offloads[0].csum_offset, 6);
  EXPECT_FALSE(port->sent_offloads[0].is_gso());
  EXPECT_EQ(port->sent[1], v4.frame);
  EXPECT_EQ(port->sent_offloads[1].gso, Gso::kTcpV4);
  EXPECT_EQ(port->sent_offloads[1].gso_size, 1448);
  EXPECT_EQ(port->sent[2], v6.frame);
  EXPECT_EQ(port->sent_offloads[2].gso, Gso::kTcpV6);
  EXPECT_TRUE(port->sent_offloads[2].gso_ecn);
  for (const Offload& o : port->sent_offloads) EXPECT_FALSE(o.data_valid);
  const VirtioNetStats s = g.dev->stats();
  EXPECT_EQ(s.tx_frames, 3u);
  EXPECT_EQ(s.tx_csum, 3u);
  EXPECT_EQ(s.tx_gso, 2u);
  EXPECT_EQ(s.tx_malformed, 0u);
}

// Each malformed header is dropped and counted; the queue keeps working.
TEST_F(OffloadTest, MalformedTransmitHeadersAreEachCounted) {
  g.start(port, kLinux & ~f(kNetFHostEcn) & ~f(kNetFHostTso6));
  Packet p = build_packet({.payload = 20000});
  const Offload good = make_tso(p, 1448);
  const NetHdr ok = tso_hdr(good);
  struct Case {
    const char* what;
    NetHdr h;
    Bytes frame;
    bool gso;  // counted as tx_bad_gso (else tx_bad_csum)
  };
  std::vector<Case> cases;
  auto with = [&](const char* what, auto edit, bool gso = true) {
    Case c{what, ok, p.frame, gso};
    edit(c);
    cases.push_back(c);
  };
  with("no NEEDS_CSUM", [](Case& c) { c.h.flags = 0; });
  with("UDP (UFO)", [](Case& c) { c.h.gso_type = 3; });
  with("unknown type 2", [](Case& c) { c.h.gso_type = 2; });
  with("UDP_L4", [](Case& c) { c.h.gso_type = 5; });
  with("TCPV6 not negotiated", [](Case& c) { c.h.gso_type = kGsoTcpV6; });
  with("ECN not negotiated", [](Case& c) { c.h.gso_type = kGsoTcpV4 | kGsoEcn; });
  with("ECN bit alone", [](Case& c) { c.h.gso_type = kGsoEcn; });
  with("gso_size 0", [](Case& c) { c.h.gso_size = 0; });
  with("segments over the MTU", [](Case& c) { c.h.gso_size = 1500; });
  with("hdr_len past the frame", [](Case& c) { c.h.hdr_len = static_cast<uint16_t>(c.frame.size() + 1); });
  with("csum_offset not TCP's", [](Case& c) { c.h.csum_offset = 6; });
  with("csum_start not the TCP header", [](Case& c) { c.h.csum_start = 14; });
  with("IP length disagrees", [](Case& c) { c.frame.resize(c.frame.size() - 1); });
  with("not TCP", [&](Case& c) { c.frame[p.l3 + 9] = 17; });
  with("IPv6 ethertype", [](Case& c) { c.frame[12] = 0x86; c.frame[13] = 0xdd; });
  with("no payload", [&](Case& c) {
    c.frame.resize(p.payload);
    net::test::wr16(c.frame, p.l3 + 2, static_cast<uint16_t>(p.payload - p.l3));
  });
  with("csum_start past the frame", [](Case& c) { c.h.csum_start = 0xfff0; }, false);
  with("plain NEEDS_CSUM, field past the end", [](Case& c) {
    c.h.gso_type = kGsoNone;
    c.frame.resize(200);
    c.h.csum_offset = static_cast<uint16_t>(200 - c.h.csum_start - 1);
  }, false);
  uint64_t want_gso = 0, want_csum = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    g.transmit(c.h, c.frame);
    (c.gso ? want_gso : want_csum) += 1;
    const VirtioNetStats s = g.dev->stats();
    EXPECT_EQ(s.tx_bad_gso, want_gso);
    EXPECT_EQ(s.tx_bad_csum, want_csum);
    EXPECT_EQ(s.tx_malformed, want_gso + want_csum);
  }
  // Length errors: larger than a GSO frame can be, and a plain frame over the MTU.
  g.transmit(NetHdr{}, Bytes(net::kMaxGsoFrame + 1, 0));
  g.transmit(NetHdr{}, net::test::frame(net::test::mac(2), net::test::mac(1), 1505));
  EXPECT_EQ(g.dev->stats().tx_malformed, cases.size() + 2);
  EXPECT_TRUE(port->sent.empty());
  g.transmit(ok, p.frame);
  ASSERT_EQ(port->sent.size(), 1u);
  EXPECT_EQ(port->sent[0], p.frame);
  EXPECT_FALSE(g.drv->rd(T::kStatus) & kStatusNeedsReset);
}

TEST_F(OffloadTest, TsoGuestWithMergeableBuffersReceivesTheWholeFrame) {
  g.start(port, kLinux);
  for (uint16_t d = 0; d < 32; ++d) g.add_rx(d, 4096);
  g.drv->notify(0);
  Packet p = build_packet({.payload = 60000});
  const Offload o = make_tso(p, 1448);
  port->inject(p.frame, o);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frame, p.frame);
  EXPECT_EQ(r->buffers, (p.frame.size() + 12 + 4095) / 4096);
  EXPECT_EQ(r->hdr.flags, kHdrFNeedsCsum);
  EXPECT_EQ(r->hdr.gso_type, kGsoTcpV4);
  EXPECT_EQ(r->hdr.gso_size, 1448);
  EXPECT_EQ(r->hdr.hdr_len, p.payload);
  EXPECT_EQ(r->hdr.csum_start, p.l4);
  EXPECT_EQ(r->hdr.csum_offset, 16);
  const VirtioNetStats s = g.dev->stats();
  EXPECT_EQ(s.rx_frames, 1u);
  EXPECT_EQ(s.rx_gso, 1u);
  EXPECT_EQ(s.rx_merged, 1u);
  EXPECT_EQ(s.rx_segmented, 0u);
  // A plain frame after it takes exactly one buffer.
  const Bytes small = net::test::frame(net::test::mac(1), net::test::mac(2), 100);
  port->inject(small);
  r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->buffers, 1);
  EXPECT_EQ(r->frame, small);
  EXPECT_EQ(r->hdr.flags, 0);
}

TEST_F(OffloadTest, TsoGuestWithoutMergeableBuffersUsesABigBuffer) {
  g.start(port, kLinux & ~f(kNetFMrgRxbuf));
  // Linux's "big packets": one chain of page-sized descriptors holding 64 KiB + header.
  g.post_rx(0, 65562, 17);
  Packet p = build_packet({.v6 = true, .payload = 50000});
  port->inject(p.frame, make_tso(p, 1428));
  auto r = g.receive(17);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->buffers, 1);
  EXPECT_EQ(r->hdr.num_buffers, 1);
  EXPECT_EQ(r->hdr.gso_type, kGsoTcpV6);
  EXPECT_EQ(r->frame, p.frame);
}

TEST_F(OffloadTest, GuestWithoutTsoGetsSegmentsWithDataValid) {
  g.start(port, kBase | kCsumBoth | f(kNetFMrgRxbuf));
  for (uint16_t d = 0; d < 64; ++d) g.add_rx(d, 1526);
  g.drv->notify(0);
  PacketSpec spec{.payload = 20000, .flags = net::test::kAck | net::test::kPsh | net::test::kFin};
  Packet p = build_packet(spec);
  port->inject(p.frame, make_tso(p, 1448));
  const size_t n = (20000 + 1447) / 1448;
  size_t got = 0;
  while (auto r = g.receive()) {
    SCOPED_TRACE(got);
    TcpFields t;
    EXPECT_EQ(check_tcp_frame(r->frame, false, p.l3, &t), "");
    EXPECT_EQ(t.seq, spec.seq + 1448 * got);
    EXPECT_EQ(r->hdr.flags, kHdrFDataValid);  // the VMM computed the checksums
    EXPECT_EQ(r->hdr.gso_type, kGsoNone);
    EXPECT_EQ(r->buffers, 1);
    EXPECT_EQ((t.flags & net::test::kFin) != 0, got + 1 == n);
    ++got;
  }
  EXPECT_EQ(got, n);
  EXPECT_EQ(g.dev->stats().rx_segmented, 1u);
  EXPECT_EQ(g.dev->stats().rx_frames, n);
}

TEST_F(OffloadTest, GuestWithoutGuestCsumGetsCompleteChecksumsAndZeroFlags) {
  g.start(port, kBase | f(kNetFCsum));  // may send partial checksums, may not receive them
  for (uint16_t d = 0; d < 32; ++d) g.add_rx(d, 1526);
  g.drv->notify(0);
  Packet udp = build_packet({.udp = true, .payload = 333});
  const Bytes complete = udp.frame;
  const Offload partial = make_partial(udp);
  port->inject(udp.frame, partial);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frame, complete);
  EXPECT_EQ(r->hdr.flags, 0);  // spec 5.1.6.3.2: flags zero without GUEST_CSUM
  EXPECT_EQ(g.dev->stats().rx_csum_completed, 1u);
  Packet p = build_packet({.payload = 3000});
  port->inject(p.frame, make_tso(p, 1448));
  for (int i = 0; i < 3; ++i) {
    r = g.receive();
    ASSERT_TRUE(r);
    EXPECT_EQ(check_tcp_frame(r->frame, false, p.l3, nullptr), "");
    EXPECT_EQ(r->hdr.flags, 0);
  }
  // Offload fields that do not match the frame never reach the guest.
  Offload bad = make_tso(p, 1448);
  bad.csum_offset = 10;
  port->inject(p.frame, bad);
  EXPECT_FALSE(g.receive());
  EXPECT_EQ(g.dev->stats().rx_dropped_malformed, 1u);
}

TEST_F(OffloadTest, GuestCsumGetsPartialChecksumsAsTheyAre) {
  g.start(port, kLinux);
  for (uint16_t d = 0; d < 4; ++d) g.add_rx(d, 1526);
  g.drv->notify(0);
  Packet udp = build_packet({.udp = true, .payload = 333});
  const Offload partial = make_partial(udp);
  port->inject(udp.frame, partial);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frame, udp.frame);
  EXPECT_EQ(r->hdr.flags, kHdrFNeedsCsum);
  EXPECT_EQ(r->hdr.csum_start, udp.l4);
  EXPECT_EQ(r->hdr.csum_offset, 6);
}

// Random headers over mutated TSO frames through the real TX path, and random offload state
// into a receiver without offloads: every chain is either sent or counted, nothing escapes
// (the sanitizer build checks memory), and whatever reaches the guest is a valid frame.
TEST_F(OffloadTest, RandomHeadersAndOffloadsNeverEscape) {
  g.start(port, kLinux & ~f(kNetFGuestTso4) & ~f(kNetFGuestTso6) & ~f(kNetFGuestCsum));
  std::mt19937_64 rng(4242);
  const int rounds = 1500;
  for (int i = 0; i < rounds; ++i) {
    Packet p = build_packet({.v6 = (rng() & 1) != 0, .payload = rng() % 9000});
    Offload o = make_tso(p, static_cast<uint16_t>(1 + rng() % 1500));
    NetHdr h = tso_hdr(o);
    switch (rng() % 5) {
      case 0: h.gso_type = static_cast<uint8_t>(rng()); break;
      case 1: h.csum_start = static_cast<uint16_t>(rng()); h.csum_offset = static_cast<uint16_t>(rng()); break;
      case 2: h.flags = static_cast<uint8_t>(rng()); break;
      case 3: p.frame[rng() % p.frame.size()] = static_cast<uint8_t>(rng()); break;
      default: h.hdr_len = static_cast<uint16_t>(rng()); break;
    }
    g.transmit(h, p.frame, 1 + static_cast<int>(rng() % 4));
  }
  const VirtioNetStats s = g.dev->stats();
  EXPECT_EQ(s.tx_frames + s.tx_malformed, static_cast<uint64_t>(rounds));
  EXPECT_GT(s.tx_frames, 0u);
  EXPECT_GT(s.tx_malformed, 0u);
  // Feed what the device accepted back into it as received frames (no GUEST_TSO/CSUM: every
  // GSO frame is segmented here, every checksum completed).
  for (uint16_t d = 0; d < 64; ++d) g.add_rx(d, 1526 + 12);
  g.drv->notify(0);
  for (size_t i = 0; i < port->sent.size(); ++i) {
    port->inject(port->sent[i], port->sent_offloads[i]);
    const bool v6 = port->sent_offloads[i].gso == Gso::kTcpV6;
    for (;;) {  // until every segment of this frame is in (a tiny gso_size may overflow the queue)
      while (auto r = g.receive()) {
        if (port->sent_offloads[i].is_gso()) {
          const size_t l3 = r->frame[12] == 0x81 ? 18 : 14;
          EXPECT_EQ(check_tcp_frame(r->frame, v6, l3, nullptr), "") << i;
        }
        EXPECT_EQ(r->hdr.flags, 0);
        EXPECT_EQ(r->hdr.gso_type, 0);
      }
      // Repost the used buffers: they are used in the order posted, so the buffer posted 64
      // entries ago is free again.
      while (static_cast<uint16_t>(g.rxq.avail_idx - g.rxq.used_idx()) < 64)
        g.add_rx(static_cast<uint16_t>(g.rxq.avail_idx % 64), 1526 + 12);
      g.drv->notify(0);
      if (g.dev->stats().rx_pending == 0 && g.rxq.used_idx() == g.rxq.last_used) break;
    }
  }
  EXPECT_EQ(g.dev->stats().rx_dropped_malformed, 0u);
}

// Two guests of one gears-vmm and a peer host, on one switch: the TSO-capable guest gets the
// 64 KiB frame whole, the plain guest gets segments, the peer gets one UDP packet per segment,
// each no larger than the overlay's frame.
TEST(OffloadSwitch, LocalGuestsAndPeersEachGetWhatTheyCanTake) {
  auto backend = std::make_shared<net::test::FakeBackend>();
  net::Switch::Options so;
  auto sw = *net::Switch::create(so, backend);
  const net::Endpoint peer{0x0a000002, 7878};
  ASSERT_TRUE(sw->add_route(net::test::mac(9), peer));

  Guest a, b, c;
  a.start(sw->add_port("a"), kLinux);
  b.start(sw->add_port("b"), kLinux);
  c.start(sw->add_port("c"), kBase);  // no offloads at all, no mergeable buffers
  for (uint16_t d = 0; d < 32; ++d) {
    b.add_rx(d, 4096);
    c.add_rx(d, 1526);
  }
  b.drv->notify(0);
  c.drv->notify(0);
  // The NICs' MACs: a make_virtio_net per guest used mac(1); frames name them by destination.
  auto to = [](Packet p, uint8_t dst) {
    const net::MacAddress m = net::test::mac(dst);
    std::copy(m.bytes.begin(), m.bytes.end(), p.frame.begin());
    const net::MacAddress s = net::test::mac(1);
    std::copy(s.bytes.begin(), s.bytes.end(), p.frame.begin() + 6);
    return p;
  };
  // Learn b and c: each sends one frame from its own MAC.
  for (auto [guest, m] : {std::pair{&b, uint8_t{3}}, std::pair{&c, uint8_t{4}}}) {
    Bytes hello = net::test::frame(net::MacAddress::broadcast(), net::test::mac(m), 46);
    guest->transmit(NetHdr{}, hello, 1);
  }
  backend->take();
  while (b.receive()) {}
  while (c.receive()) {}

  Packet base = build_packet({.payload = 40000});
  Packet pb = to(base, 3), pc = to(base, 4), pp = to(base, 9);
  for (Packet* p : {&pb, &pc, &pp}) a.transmit(tso_hdr(make_tso(*p, 1448)), p->frame, 11);

  auto rb = b.receive();
  ASSERT_TRUE(rb);
  EXPECT_EQ(rb->frame, pb.frame);
  EXPECT_EQ(rb->hdr.gso_type, kGsoTcpV4);
  const size_t n = (40000 + 1447) / 1448;
  for (size_t i = 0; i < n; ++i) {
    auto rc = c.receive();
    ASSERT_TRUE(rc) << i;
    EXPECT_EQ(check_tcp_frame(rc->frame, false, base.l3, nullptr), "");
    EXPECT_EQ(rc->hdr.flags, 0);
  }
  EXPECT_FALSE(c.receive());
  const auto sent = backend->take();
  ASSERT_EQ(sent.size(), n);
  for (const auto& [ep, payload] : sent) {
    EXPECT_EQ(ep, peer);
    const net::Decapsulated d = net::decapsulate(payload, so.network, sw->max_frame());
    ASSERT_EQ(d.error, net::DecapError::kNone);
    EXPECT_EQ(check_tcp_frame(Bytes(d.frame.begin(), d.frame.end()), false, base.l3, nullptr), "");
  }
  EXPECT_EQ(sw->count(net::Counter::kGsoSegmented), 1u);
  EXPECT_EQ(sw->count(net::Counter::kRemoteTxPackets), n + 2);  // + the two flooded hellos
  EXPECT_EQ(b.dev->stats().rx_gso, 1u);
  EXPECT_EQ(c.dev->stats().rx_segmented, 1u);

  // A partial checksum for the peer is completed; offload fields that lie are dropped.
  Packet udp = to(build_packet({.udp = true, .payload = 500}), 9);
  const Bytes complete = udp.frame;
  const Offload partial = make_partial(udp);
  a.transmit(tso_hdr(partial), udp.frame, 1);
  auto one = backend->take();
  ASSERT_EQ(one.size(), 1u);
  const net::Decapsulated d = net::decapsulate(one[0].second, so.network, sw->max_frame());
  EXPECT_EQ(Bytes(d.frame.begin(), d.frame.end()), complete);
  EXPECT_EQ(sw->count(net::Counter::kCsumCompleted), 1u);
  auto port = sw->add_port("raw");
  Offload lie = partial;
  lie.csum_start = 4000;
  port->send(udp.frame, lie);
  EXPECT_EQ(sw->count(net::Counter::kDropBadOffload), 1u);
}

}  // namespace
}  // namespace gears::vmm::virtio
