// The overlay accelerator's host side without a guest: the switch's path for packets a guest
// encapsulated itself, its receive tap and route generation, the NIC view a service gets, and
// the sample's VMM side of the shared ring (samples/overlay_accel/ovl_vmm.h) against a "guest"
// that is this test writing the area, correctly and hostilely.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <thread>

#include "net/encap.h"
#include "net/overlay_nic.h"
#include "net/switch.h"
#include "net_test_util.h"
#include "ovl_vmm.h"
#include "packet_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::encap;
using test::FakeBackend;
using test::frame;
using test::Inbox;
using test::mac;

const Endpoint kPeer{0x0a000002, 7878};

class AccelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    backend = std::make_shared<FakeBackend>();
    auto s = Switch::create({}, backend);
    ASSERT_TRUE(s) << s.error().what();
    sw = *s;
    guest = sw->add_port("net0");
    guest->set_receiver(guest_in.receiver());
    other = sw->add_port("net1");
    other->set_receiver(other_in.receiver());
    view = std::make_unique<SwitchNicView>(sw, guest, "net0", mac(1));
  }
  uint64_t count(Counter c) const { return sw->count(c); }

  std::shared_ptr<FakeBackend> backend;
  std::shared_ptr<Switch> sw;
  std::shared_ptr<Port> guest, other;
  Inbox guest_in, other_in;
  std::unique_ptr<SwitchNicView> view;
};

TEST_F(AccelTest, EncapsulatedPacketForARoutedPeerIsSentAsIs) {
  ASSERT_TRUE(sw->add_route(mac(9), kPeer));
  const Bytes p = encap(frame(mac(9), mac(1), 100, 7));
  EXPECT_EQ(view->send_encapsulated(p), OverlaySend::sent);
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer);
  EXPECT_EQ(sent[0].second, p);
  EXPECT_EQ(count(Counter::kPortEncapPackets), 1u);
  EXPECT_EQ(count(Counter::kPortRxFrames), 1u);
  EXPECT_EQ(count(Counter::kRemoteTxPackets), 1u);
}

TEST_F(AccelTest, EncapsulatedPacketForALocalGuestIsSwitchedAsAFrame) {
  other->send(frame(MacAddress::broadcast(), mac(2)));  // learns mac(2) at net1
  backend->take();
  other_in.frames.clear();
  const Bytes f = frame(mac(2), mac(1));
  EXPECT_EQ(view->send_encapsulated(encap(f)), OverlaySend::switched);
  ASSERT_EQ(other_in.size(), 1u);
  EXPECT_EQ(other_in.at(0), f);
  EXPECT_TRUE(backend->take().empty());
}

TEST_F(AccelTest, UnknownDestinationFloodsWithThePacketAsBuilt) {
  sw->add_peer(kPeer);
  const Bytes f = frame(mac(7), mac(1));
  const Bytes p = encap(f);
  EXPECT_EQ(view->send_encapsulated(p), OverlaySend::switched);
  ASSERT_EQ(other_in.size(), 1u);
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].second, p);
}

TEST_F(AccelTest, MalformedPacketsFromTheGuestAreDroppedAndCounted) {
  ASSERT_TRUE(sw->add_route(mac(9), kPeer));
  const Bytes good = encap(frame(mac(9), mac(1)));
  Bytes wrong_net = encap(frame(mac(9), mac(1)), 2);
  Bytes bad_len = good;
  bad_len[7] ^= 1;  // length field disagrees with the packet
  Bytes bad_magic = good;
  bad_magic[0] = 0;
  Bytes zero_src = encap(frame(mac(9), MacAddress{}));
  for (const Bytes& p : {wrong_net, bad_len, bad_magic, Bytes(good.begin(), good.begin() + 11), Bytes{}})
    EXPECT_EQ(view->send_encapsulated(p), OverlaySend::dropped);
  EXPECT_EQ(view->send_encapsulated(zero_src), OverlaySend::dropped);
  EXPECT_EQ(count(Counter::kDropPortBadEncap), 5u);
  EXPECT_EQ(count(Counter::kDropBadFrame), 1u);
  EXPECT_TRUE(backend->take().empty());
  EXPECT_EQ(sw->routes().size(), 1u);  // nothing learned from them
}

TEST_F(AccelTest, RemoteMacsAndGenerationFollowTheTable) {
  const uint64_t g0 = view->routes_generation();
  EXPECT_TRUE(view->remote_macs(8).empty());
  ASSERT_TRUE(sw->add_route(mac(9), kPeer));
  const uint64_t g1 = view->routes_generation();
  EXPECT_NE(g1, g0);
  backend->receive(kPeer, encap(frame(mac(1), mac(8))));  // learns mac(8) at the peer
  const uint64_t g2 = view->routes_generation();
  EXPECT_NE(g2, g1);
  auto macs = view->remote_macs(8);
  ASSERT_EQ(macs.size(), 2u);
  EXPECT_EQ(macs[0], mac(9).bytes);  // static first
  EXPECT_EQ(macs[1], mac(8).bytes);
  EXPECT_EQ(view->remote_macs(1).size(), 1u);
  backend->receive(kPeer, encap(frame(mac(1), mac(8))));  // refresh only: no change
  EXPECT_EQ(view->routes_generation(), g2);
  EXPECT_TRUE(sw->remove_route(mac(9)));
  EXPECT_NE(view->routes_generation(), g2);
  EXPECT_EQ(view->remote_macs(8).size(), 1u);
}

TEST_F(AccelTest, TapTakesFramesUntilRemoved) {
  Inbox tapped;
  bool take = true;
  view->set_rx_tap([&](std::span<const uint8_t> f) {
    if (take) tapped.receiver()(f, Offload{});
    return take;
  });
  other->send(frame(mac(1), mac(2)));
  EXPECT_EQ(tapped.size(), 1u);
  EXPECT_EQ(guest_in.size(), 0u);
  take = false;  // declined: the NIC receives it
  other->send(frame(mac(1), mac(2)));
  EXPECT_EQ(guest_in.size(), 1u);
  view->set_rx_tap({});
  take = true;
  other->send(frame(mac(1), mac(2)));
  EXPECT_EQ(tapped.size(), 1u);
  EXPECT_EQ(guest_in.size(), 2u);
  EXPECT_EQ(count(Counter::kPortTapFrames), 1u);
}

TEST_F(AccelTest, DestroyedViewTakesItsTapAlong) {
  view->set_rx_tap([](std::span<const uint8_t>) { return true; });
  view.reset();
  other->send(frame(mac(1), mac(2)));
  EXPECT_EQ(guest_in.size(), 1u);
}

// ---- the sample's VMM side of the ring, with this test as the guest

class RingTest : public AccelTest {
 protected:
  void SetUp() override {
    AccelTest::SetUp();
    area.assign(OVL_AREA_SIZE, 0);
    c()->magic = OVL_MAGIC;
    c()->area_size = OVL_AREA_SIZE;
    c()->tx_slots = OVL_TX_SLOTS;
    c()->rx_slots = OVL_RX_SLOTS;
    ASSERT_TRUE(sw->add_route(mac(9), kPeer));
  }
  ovl_ctrl* c() { return reinterpret_cast<ovl_ctrl*>(area.data()); }
  ovl_rings* r() { return reinterpret_cast<ovl_rings*>(area.data() + OVL_RINGS_OFF); }
  ovl_slot* slot(uint32_t i) {
    return reinterpret_cast<ovl_slot*>(area.data() + OVL_TX_OFF + size_t{i % OVL_TX_SLOTS} * OVL_SLOT_SIZE);
  }
  // What the guest's packet path does for one packet it encapsulated.
  void push(const Bytes& packet, uint32_t len_override = 0) {
    ovl_slot* s = slot(r()->tx.prod);
    std::memset(s, 0, OVL_SLOT_HDR);
    s->flags = OVL_TX_ENCAP;
    std::memcpy(s->data, packet.data(), std::min<size_t>(packet.size(), OVL_SLOT_DATA));
    s->len = len_override ? len_override : static_cast<uint32_t>(packet.size());
    r()->tx.prod++;
  }
  // ... and for a frame it hands over whole with its offload state, through as many slots as
  // it takes (the entry's description in the first).
  void push_frame(const Bytes& f, const Offload& o) {
    const uint32_t first = r()->tx.prod;
    ovl_slot* s = slot(first);
    std::memset(s, 0, OVL_SLOT_HDR);
    s->len = static_cast<uint32_t>(f.size());
    s->flags = o.needs_csum ? OVL_TX_CSUM : 0;
    s->csum_start = o.csum_start;
    s->csum_offset = o.csum_offset;
    s->gso_type = o.gso == Gso::kTcpV4 ? OVL_GSO_TCPV4 : o.gso == Gso::kTcpV6 ? OVL_GSO_TCPV6 : OVL_GSO_NONE;
    s->gso_size = o.gso_size;
    s->hdr_len = o.hdr_len;
    uint32_t i = first;
    for (size_t off = 0; off < f.size(); off += OVL_SLOT_DATA, ++i)
      std::memcpy(slot(i)->data, f.data() + off, std::min<size_t>(f.size() - off, OVL_SLOT_DATA));
    r()->tx.prod = first + ovl_tx_entry_slots(s->len);
  }
  // Addresses a frame built by test::build_packet to the MAC routed to the peer.
  static void to_peer(Bytes& f) {
    const MacAddress m = mac(9);
    std::copy(m.bytes.begin(), m.bytes.end(), f.begin());
  }
  uint64_t counter(const std::string& name) {
    for (auto& [n, v] : side.counters())
      if (n == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
  }

  std::vector<uint8_t> area;
  ovl::VmmSide side;
};

TEST_F(RingTest, AttachPublishesTheNicAndTheRemoteMacs) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  EXPECT_EQ(c()->attached, 1u);
  EXPECT_EQ(std::memcmp(c()->mac, mac(1).bytes.data(), 6), 0);
  EXPECT_EQ(c()->network, 1u);
  EXPECT_EQ(c()->mtu, 1500u);
  ASSERT_EQ(c()->nroutes, 1u);
  EXPECT_EQ(std::memcmp(c()->routes[0], mac(9).bytes.data(), 6), 0);
  EXPECT_EQ(c()->routes_seq % 2, 0u);
  EXPECT_EQ(side.attach(area, view.get()), -16);  // one area at a time
  // A route change reaches the guest at the next poll.
  ASSERT_TRUE(sw->add_route(mac(10), kPeer));
  side.poll();
  EXPECT_EQ(c()->nroutes, 2u);
}

TEST_F(RingTest, AttachRefusesAnAreaOfAnotherLayout) {
  c()->magic = 0;
  EXPECT_EQ(side.attach(area, view.get()), -22);
  c()->magic = OVL_MAGIC;
  c()->tx_slots = 4096;
  EXPECT_EQ(side.attach(area, view.get()), -22);
  c()->tx_slots = OVL_TX_SLOTS;
  EXPECT_EQ(side.attach(std::span(area).first(OVL_AREA_SIZE - 1), view.get()), -22);
  EXPECT_FALSE(side.attached());
}

TEST_F(RingTest, PolledPacketsGoToThePeerInOrder) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  std::vector<Bytes> packets;
  for (uint8_t i = 0; i < 5; ++i) packets.push_back(encap(frame(mac(9), mac(1), 60 + i, i)));
  for (const Bytes& p : packets) push(p);
  EXPECT_TRUE(side.poll());
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(sent[i].second, packets[i]);
  EXPECT_EQ(r()->tx.cons, 5u);
  EXPECT_EQ(counter("tx_sent"), 5u);
}

TEST_F(RingTest, RingWrapsAroundItsEnd) {
  r()->tx.prod = r()->tx.cons = 0xffffff00u;  // indices about to wrap
  ASSERT_EQ(side.attach(area, view.get()), 0);
  for (uint32_t round = 0; round < 3 * OVL_TX_SLOTS / 64; ++round) {
    for (int i = 0; i < 64; ++i) push(encap(frame(mac(9), mac(1))));
    side.poll();
  }
  EXPECT_EQ(backend->take().size(), 3 * OVL_TX_SLOTS);
  EXPECT_EQ(counter("tx_bad_slot") + counter("tx_bad_index"), 0u);
}

TEST_F(RingTest, HostileRingContentsAreCountedAndSkipped) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  const Bytes good = encap(frame(mac(9), mac(1)));
  push(good, 0xffffffffu);     // length beyond the slot
  push(good, 3);               // shorter than a header
  push(encap(frame(mac(9), mac(1)), 77));  // another overlay's id
  push(good);
  side.poll();
  EXPECT_EQ(counter("tx_bad_slot"), 2u);
  EXPECT_EQ(counter("tx_dropped"), 1u);
  EXPECT_EQ(backend->take().size(), 1u);
  // A producer index far ahead of the consumer: skipped to, nothing read from it.
  r()->tx.prod += 100000;
  side.poll();
  EXPECT_EQ(counter("tx_bad_index"), 1u);
  EXPECT_EQ(r()->tx.cons, r()->tx.prod);
  push(good);
  side.poll();
  EXPECT_EQ(backend->take().size(), 1u);
}

// A TSO frame the guest handed over whole (wrapping at the ring's end): the host segments it,
// each segment a complete TCP packet to the peer, and the guest spent no CPU on it.
TEST_F(RingTest, TsoFrameAcrossSlotsIsSegmentedByTheHost) {
  r()->tx.prod = r()->tx.cons = OVL_TX_SLOTS - 3;  // the entry's slots wrap
  ASSERT_EQ(side.attach(area, view.get()), 0);
  test::Packet p = test::build_packet({.payload = 40000});
  to_peer(p.frame);
  const Offload o = test::make_tso(p, 1448);
  push_frame(p.frame, o);
  ASSERT_GT(r()->tx.prod - r()->tx.cons, 3u);
  side.poll();
  EXPECT_EQ(r()->tx.cons, r()->tx.prod);
  const auto sent = backend->take();
  ASSERT_EQ(sent.size(), (40000u + 1447) / 1448);
  uint32_t seq = 0x01020304;
  for (const auto& [to, packet] : sent) {
    EXPECT_EQ(to, kPeer);
    const Bytes seg(packet.begin() + kHeaderSize, packet.end());
    test::TcpFields t;
    ASSERT_EQ(test::check_tcp_frame(seg, false, p.l3, &t), "");
    EXPECT_EQ(t.seq, seq);
    seq += static_cast<uint32_t>(t.payload_len);
  }
  EXPECT_EQ(seq - 0x01020304, 40000u);
  EXPECT_EQ(counter("tx_gso"), 1u);
  EXPECT_EQ(counter("tx_sent"), 1u);
  EXPECT_EQ(counter("tx_bad_slot") + counter("tx_bad_index"), 0u);
}

// A frame with a partial checksum (what the stack leaves a NIC with checksum offload): the host
// completes it; the packet the peer gets verifies.
TEST_F(RingTest, PartialChecksumIsCompletedByTheHost) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  test::Packet p = test::build_packet({.udp = true, .payload = 300});
  to_peer(p.frame);
  const Bytes complete = p.frame;
  const Offload o = test::make_partial(p);
  ASSERT_NE(p.frame, complete);
  push_frame(p.frame, o);
  side.poll();
  const auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(Bytes(sent[0].second.begin() + kHeaderSize, sent[0].second.end()), complete);
}

// Offload entries a hostile guest writes: each is refused (counted) and the ring goes on.
TEST_F(RingTest, HostileOffloadEntriesAreCountedAndSkipped) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  test::Packet p = test::build_packet({.payload = 8000});
  to_peer(p.frame);
  const Offload tso = test::make_tso(p, 1448);
  push_frame(p.frame, tso);
  slot(r()->tx.prod - 4)->flags = 0x80;  // an unknown flag
  push_frame(p.frame, tso);
  slot(r()->tx.prod - 4)->gso_type = 3;  // UDP fragmentation offload: not implemented
  Offload bad = tso;
  bad.gso_size = 0;
  push_frame(p.frame, bad);  // the switch's check: dropped
  bad = tso;
  bad.csum_start = 60000;
  push_frame(p.frame, bad);
  push_frame(p.frame, tso);  // a good one after them all
  side.poll();
  EXPECT_EQ(counter("tx_bad_slot"), 2u);
  EXPECT_EQ(counter("tx_dropped"), 2u);
  EXPECT_EQ(counter("tx_sent"), 1u);
  EXPECT_EQ(backend->take().size(), (8000u + 1447) / 1448);
  // An entry whose length runs past the producer index: skipped up to the index, no read past it.
  push_frame(p.frame, tso);
  r()->tx.prod -= 1;
  side.poll();
  EXPECT_EQ(counter("tx_bad_slot"), 3u);
  EXPECT_EQ(r()->tx.cons, r()->tx.prod);
  EXPECT_TRUE(backend->take().empty());
  push(encap(frame(mac(9), mac(1))));
  side.poll();
  EXPECT_EQ(backend->take().size(), 1u);
}

TEST_F(RingTest, PollerSleepsOnlyAfterSayingSoAndKickSendsOnTheCaller) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (side.poll() && std::chrono::steady_clock::now() < until) std::this_thread::yield();
  EXPECT_EQ(c()->vmm_sleeping, 1u);
  push(encap(frame(mac(9), mac(1))));
  side.kick();  // the guest saw the flag: the packet goes out now
  EXPECT_EQ(backend->take().size(), 1u);
  EXPECT_TRUE(side.poll());  // awake again
  EXPECT_EQ(c()->vmm_sleeping, 0u);
}

TEST_F(RingTest, DetachSendsWhatIsLeftAndStopsReading) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  push(encap(frame(mac(9), mac(1))));
  push(encap(frame(mac(9), mac(1))));
  side.detach();
  EXPECT_EQ(backend->take().size(), 2u);
  EXPECT_EQ(c()->attached, 0u);
  push(encap(frame(mac(9), mac(1))));
  EXPECT_FALSE(side.poll());
  side.kick();
  EXPECT_TRUE(backend->take().empty());
  EXPECT_EQ(side.attach(area, view.get()), 0);  // and again (a redeploy)
}

TEST_F(RingTest, ReceiveTapFillsTheRingOnlyWhileTheGuestPolls) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  view->set_rx_tap([this](std::span<const uint8_t> f) { return side.rx_tap(f); });
  const Bytes f = frame(mac(1), mac(2), 80, 3);
  other->send(f);  // the guest does not poll: its NIC receives it
  EXPECT_EQ(guest_in.size(), 1u);
  EXPECT_EQ(r()->rx.prod, 0u);
  c()->guest_rx_polling = 1;
  other->send(f);
  EXPECT_EQ(guest_in.size(), 1u);
  ASSERT_EQ(r()->rx.prod, 1u);
  auto* s0 = reinterpret_cast<ovl_slot*>(area.data() + OVL_RX_OFF);
  ASSERT_EQ(s0->len, f.size());
  EXPECT_EQ(Bytes(s0->data, s0->data + s0->len), f);
  EXPECT_EQ(counter("rx_ring"), 1u);
  EXPECT_EQ(counter("rx_nic"), 1u);
  // Going idle: the flag is cleared by the VMM, which says one frame is still in the ring.
  EXPECT_EQ(side.rx_stop(), 1);
  EXPECT_EQ(c()->guest_rx_polling, 0u);
  other->send(f);
  EXPECT_EQ(guest_in.size(), 2u);
  view->set_rx_tap({});
}

TEST_F(RingTest, FullOrHostileReceiveRingSendsFramesToTheNic) {
  ASSERT_EQ(side.attach(area, view.get()), 0);
  c()->guest_rx_polling = 1;
  const Bytes f = frame(mac(1), mac(2));
  for (uint32_t i = 0; i < OVL_RX_SLOTS; ++i) EXPECT_TRUE(side.rx_tap(f));
  EXPECT_FALSE(side.rx_tap(f));  // full: the NIC takes it
  EXPECT_EQ(counter("rx_full"), 1u);
  r()->rx.cons = OVL_RX_SLOTS;  // the guest consumed them all
  EXPECT_TRUE(side.rx_tap(f));
  r()->rx.cons = r()->rx.prod + 7;  // a consumer ahead of the producer: garbage, reads as full
  EXPECT_FALSE(side.rx_tap(f));
  r()->rx.cons = r()->rx.prod;
  EXPECT_FALSE(side.rx_tap(Bytes(OVL_SLOT_DATA + 1, 0)));  // larger than a slot
  EXPECT_EQ(side.rx_stop(), 0);  // nothing pending
  side.detach();
  c()->guest_rx_polling = 1;
  EXPECT_FALSE(side.rx_tap(f));  // detached: nothing lands in the area
}

}  // namespace
}  // namespace gears::vmm::net
