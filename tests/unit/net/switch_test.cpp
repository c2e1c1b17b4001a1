// The overlay switch against local ports and a FakeBackend: forwarding, learning, flooding,
// ageing, static routes, and every drop reason.
#include "net/switch.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>

#include "net/encap.h"
#include "net_test_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::encap;
using test::FakeBackend;
using test::frame;
using test::Inbox;
using test::mac;

const Endpoint kPeer1{0x0a000002, 7878};
const Endpoint kPeer2{0x0a000003, 7878};

class SwitchTest : public ::testing::Test {
 protected:
  void SetUp() override { make({}); }
  void make(Switch::Options opts) {
    ports.clear();
    sw.reset();
    backend = std::make_shared<FakeBackend>();
    opts.clock = [this] { return now; };
    auto s = Switch::create(opts, backend);
    ASSERT_TRUE(s) << s.error().what();
    sw = *s;
    for (auto& in : inbox) in.frames.clear();
    for (int i = 0; i < 3; ++i) {
      ports.push_back(sw->add_port("p" + std::to_string(i)));
      ports.back()->set_receiver(inbox[i].receiver());
    }
  }
  uint64_t count(Counter c) const { return sw->count(c); }

  std::chrono::steady_clock::time_point now{std::chrono::hours(1)};
  std::shared_ptr<FakeBackend> backend;
  std::shared_ptr<Switch> sw;
  Inbox inbox[3];
  std::vector<std::shared_ptr<Port>> ports;
};

TEST_F(SwitchTest, BroadcastFloodsLocalPortsAndPeers) {
  sw->add_peer(kPeer1);
  const Bytes f = frame(MacAddress::broadcast(), mac(0));
  ports[0]->send(f);
  EXPECT_EQ(inbox[0].size(), 0u);  // not back to the sender
  ASSERT_EQ(inbox[1].size(), 1u);
  ASSERT_EQ(inbox[2].size(), 1u);
  EXPECT_EQ(inbox[1].at(0), f);
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer1);
  EXPECT_EQ(sent[0].second, encap(f));
  EXPECT_EQ(count(Counter::kFlooded), 1u);
  EXPECT_EQ(count(Counter::kRemoteTxPackets), 1u);
}

TEST_F(SwitchTest, LearnedUnicastGoesToOnePort) {
  sw->add_peer(kPeer1);
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));  // learns mac(0) at p0
  backend->take();
  const Bytes reply = frame(mac(0), mac(1));
  ports[1]->send(reply);
  ASSERT_EQ(inbox[0].size(), 1u);
  EXPECT_EQ(inbox[0].at(0), reply);
  EXPECT_EQ(inbox[2].size(), 1u);  // only the first broadcast
  EXPECT_TRUE(backend->take().empty());
  EXPECT_EQ(count(Counter::kLearned), 2u);
}

TEST_F(SwitchTest, UnknownUnicastFloods) {
  sw->add_peer(kPeer1);
  ports[0]->send(frame(mac(9), mac(0)));
  EXPECT_EQ(inbox[1].size(), 1u);
  EXPECT_EQ(inbox[2].size(), 1u);
  EXPECT_EQ(backend->take().size(), 1u);
}

TEST_F(SwitchTest, HairpinIsDropped) {
  ports[0]->send(frame(mac(9), mac(0)));
  ports[0]->send(frame(mac(0), mac(0)));
  EXPECT_EQ(count(Counter::kDropHairpin), 1u);
  EXPECT_EQ(inbox[1].size(), 1u);
}

TEST_F(SwitchTest, StaticRouteEncapsulatesToItsPeer) {
  ASSERT_TRUE(sw->add_route(mac(7), kPeer2));
  EXPECT_EQ(sw->peers(), std::vector<Endpoint>{kPeer2});  // a route's peer joins the flood set
  const Bytes f = frame(mac(7), mac(0), 200);
  ports[0]->send(f);
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer2);
  auto d = decapsulate(sent[0].second, 1, sw->max_frame());
  ASSERT_EQ(d.error, DecapError::kNone);
  EXPECT_EQ(Bytes(d.frame.begin(), d.frame.end()), f);
  EXPECT_EQ(inbox[1].size(), 0u);
  // Static routes are neither aged nor overridden by learning.
  now += std::chrono::hours(100);
  backend->receive(kPeer1, encap(frame(mac(0), mac(7))));
  ports[0]->send(f);
  sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer2);
  EXPECT_TRUE(sw->remove_route(mac(7)));
  EXPECT_TRUE(sw->peers().empty());
  EXPECT_FALSE(sw->add_route(MacAddress::broadcast(), kPeer2));
}

TEST_F(SwitchTest, PacketsFromPeersAreDeliveredAndLearned) {
  sw->add_peer(kPeer1);
  sw->add_peer(kPeer2);
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  backend->take();
  const Bytes f = frame(mac(0), mac(20), 100);
  backend->receive(kPeer1, encap(f));
  ASSERT_EQ(inbox[0].size(), 1u);
  EXPECT_EQ(inbox[0].at(0), f);
  EXPECT_EQ(inbox[1].size(), 1u);  // the broadcast only
  EXPECT_EQ(count(Counter::kRemoteRxPackets), 1u);
  // mac(20) is now known behind kPeer1: a reply goes there only.
  ports[0]->send(frame(mac(20), mac(0)));
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer1);
  auto routes = sw->routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].mac, mac(0));
  EXPECT_TRUE(routes[0].local);
  EXPECT_EQ(routes[0].port, "p0");
  EXPECT_EQ(routes[1].mac, mac(20));
  EXPECT_FALSE(routes[1].local);
  EXPECT_EQ(routes[1].peer, kPeer1);
}

TEST_F(SwitchTest, BroadcastFromPeerStaysLocal) {
  sw->add_peer(kPeer1);
  sw->add_peer(kPeer2);
  backend->receive(kPeer1, encap(frame(MacAddress::broadcast(), mac(20))));
  EXPECT_EQ(inbox[0].size(), 1u);
  EXPECT_EQ(inbox[1].size(), 1u);
  EXPECT_EQ(inbox[2].size(), 1u);
  EXPECT_TRUE(backend->take().empty());  // split horizon
}

TEST_F(SwitchTest, PeerToPeerUnicastIsNotRelayed) {
  ASSERT_TRUE(sw->add_route(mac(30), kPeer2));
  backend->receive(kPeer1, encap(frame(mac(30), mac(20))));
  EXPECT_TRUE(backend->take().empty());
  EXPECT_EQ(count(Counter::kDropRemoteToRemote), 1u);
}

TEST_F(SwitchTest, MalformedPacketsFromPeersAreCountedAndDropped) {
  const Bytes good = encap(frame(mac(0), mac(20)));
  auto with = [&](size_t off, uint8_t v) {
    Bytes p = good;
    p[off] = v;
    return p;
  };
  backend->receive(kPeer1, Bytes(5, 0));
  backend->receive(kPeer1, with(0, 0x00));  // magic
  backend->receive(kPeer1, with(4, 2));     // version
  backend->receive(kPeer1, with(5, 0x80));  // unknown flag
  backend->receive(kPeer1, encap(frame(mac(0), mac(20)), 2));  // another overlay
  Bytes longer = good;
  longer.push_back(0);
  backend->receive(kPeer1, longer);  // length field != payload
  backend->receive(kPeer1, encap(Bytes(10, 1)));
  backend->receive(kPeer1, encap(frame(mac(0), mac(20), 1600)));
  backend->receive(kPeer1, encap(frame(mac(0), MacAddress::broadcast())));
  backend->receive(kPeer1, encap(frame(mac(0), MacAddress{})));
  for (Counter c : {Counter::kDropRemoteShort, Counter::kDropRemoteBadMagic, Counter::kDropRemoteBadVersion,
                    Counter::kDropRemoteBadFlags, Counter::kDropRemoteWrongNetwork, Counter::kDropRemoteBadLength,
                    Counter::kDropRemoteFrameTooShort, Counter::kDropRemoteFrameTooLong})
    EXPECT_EQ(count(c), 1u) << counter_name(c);
  EXPECT_EQ(count(Counter::kDropRemoteBadSource), 2u);
  for (auto& in : inbox) EXPECT_EQ(in.size(), 0u);
  EXPECT_TRUE(sw->routes().empty());  // nothing learned from garbage
  backend->receive(kPeer1, good);      // and good traffic still flows
  EXPECT_EQ(inbox[0].size(), 1u);
}

TEST_F(SwitchTest, BadFramesFromPortsAreCountedAndDropped) {
  ports[0]->send(Bytes(13, 0));
  ports[0]->send(frame(mac(1), mac(0), 1505));  // 1519 > 1500 + 18
  ports[0]->send(frame(mac(1), MacAddress::broadcast()));
  ports[0]->send(frame(mac(1), MacAddress{}));
  EXPECT_EQ(count(Counter::kDropBadFrame), 4u);
  EXPECT_EQ(inbox[1].size(), 0u);
  ports[0]->send(frame(mac(1), mac(0), 1504));  // exactly the maximum
  EXPECT_EQ(inbox[1].size(), 1u);
}

TEST_F(SwitchTest, LearnedEntriesAge) {
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  now += std::chrono::seconds(299);
  ports[1]->send(frame(mac(0), mac(1)));
  EXPECT_EQ(inbox[2].size(), 1u);  // still known: not flooded
  now += std::chrono::seconds(301);
  ports[1]->send(frame(mac(0), mac(1)));
  EXPECT_EQ(inbox[2].size(), 2u);  // expired: flooded again
  EXPECT_EQ(count(Counter::kAged), 1u);
  now += std::chrono::seconds(301);
  sw->expire();
  EXPECT_EQ(count(Counter::kAged), 2u);  // mac(1)
  EXPECT_TRUE(sw->routes().empty());
}

TEST_F(SwitchTest, PeerCannotTakeAFreshLocalMac) {
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  backend->receive(kPeer1, encap(frame(mac(1), mac(0))));  // spoofed source: delivered, not learned
  ports[1]->send(frame(mac(0), mac(1)));
  EXPECT_EQ(inbox[0].size(), 2u);
  EXPECT_TRUE(backend->take().empty());
}

TEST_F(SwitchTest, FullTableStillForwards) {
  Switch::Options o;
  o.max_entries = 2;
  make(o);
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  ports[1]->send(frame(MacAddress::broadcast(), mac(1)));
  ports[2]->send(frame(MacAddress::broadcast(), mac(2)));
  EXPECT_EQ(count(Counter::kDropTableFull), 1u);
  EXPECT_EQ(inbox[0].size(), 2u);
  EXPECT_EQ(sw->routes().size(), 2u);
}

TEST_F(SwitchTest, VanishedPeerIsCountedAndOthersStillWork) {
  sw->add_peer(kPeer1);
  sw->add_peer(kPeer2);
  backend->fail_to(kPeer1, SendStatus::kUnreachable);
  backend->receive(kPeer1, encap(frame(mac(0), mac(20))));  // learn mac(20) behind kPeer1
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  EXPECT_EQ(count(Counter::kDropSendUnreachable), 1u);
  auto sent = backend->take();
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_EQ(sent[0].first, kPeer2);
  // The ICMP report: what was learned behind the peer is forgotten, so frames flood again.
  backend->report_error(kPeer1, ECONNREFUSED);
  EXPECT_EQ(count(Counter::kPeerUnreachable), 1u);
  ports[0]->send(frame(mac(20), mac(0)));
  EXPECT_EQ(inbox[1].size(), 3u);  // the peer's frame, the broadcast, and this flood
  EXPECT_EQ(backend->take().size(), 1u);  // kPeer2; kPeer1 fails again
  EXPECT_EQ(count(Counter::kDropSendUnreachable), 2u);
  backend->fail_to(kPeer2, SendStatus::kNoBuffer);
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  EXPECT_EQ(count(Counter::kDropSendNoBuffer), 1u);
}

TEST_F(SwitchTest, StrictPeersRejectsStrangers) {
  Switch::Options o;
  o.strict_peers = true;
  make(o);
  sw->add_peer(kPeer1);
  backend->receive(kPeer2, encap(frame(mac(0), mac(20))));
  EXPECT_EQ(count(Counter::kDropRemoteUnknownPeer), 1u);
  backend->receive(kPeer1, encap(frame(mac(0), mac(20))));
  EXPECT_EQ(inbox[0].size(), 1u);
}

TEST_F(SwitchTest, DroppedPortLeavesTheSwitch) {
  ports[2]->send(frame(MacAddress::broadcast(), mac(2)));
  ports[2].reset();
  EXPECT_EQ(sw->routes().size(), 0u);
  ports[0]->send(frame(mac(2), mac(0)));  // flooded to the remaining port only
  EXPECT_EQ(inbox[1].size(), 2u);
  EXPECT_EQ(inbox[2].size(), 0u);
}

TEST_F(SwitchTest, DetachedReceiverGetsNothing) {
  ports[1]->set_receiver({});
  ports[0]->send(frame(MacAddress::broadcast(), mac(0)));
  EXPECT_EQ(inbox[1].size(), 0u);
  EXPECT_EQ(inbox[2].size(), 1u);
}

TEST(SwitchNoBackend, LocalOnlySwitch) {
  auto s = Switch::create({}, nullptr);
  ASSERT_TRUE(s);
  auto sw = *s;
  Inbox in;
  auto a = sw->add_port("a"), b = sw->add_port("b");
  b->set_receiver(in.receiver());
  ASSERT_TRUE(sw->add_route(mac(7), kPeer1));
  a->send(frame(mac(7), mac(0)));
  EXPECT_EQ(sw->count(Counter::kDropNoBackend), 1u);
  a->send(frame(mac(8), mac(0)));
  EXPECT_EQ(in.size(), 1u);
}

TEST(SwitchOptions, AreChecked) {
  Switch::Options o;
  o.mtu = 67;
  EXPECT_FALSE(Switch::create(o, nullptr));
  o.mtu = 9001;
  EXPECT_FALSE(Switch::create(o, nullptr));
  o.mtu = 9000;
  EXPECT_TRUE(Switch::create(o, nullptr));
  o.max_entries = 0;
  EXPECT_FALSE(Switch::create(o, nullptr));
}

TEST(SwitchStats, EveryCounterHasAName) {
  auto sw = *Switch::create({}, nullptr);
  auto st = sw->stats();
  ASSERT_EQ(st.size(), static_cast<size_t>(Counter::kCount));
  for (auto& [name, v] : st) {
    EXPECT_FALSE(name.empty());
    EXPECT_EQ(v, 0u);
  }
}

}  // namespace
}  // namespace gears::vmm::net
