// Two overlay switches with real UDP backends on 127.0.0.1: frames cross encapsulated, bad
// packets from the network are dropped and counted, and a vanished peer does not stop traffic
// to the others. Waits are for other threads' work and bounded only against hangs.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/encap.h"
#include "net/overlay_config.h"
#include "net/udp_backend.h"
#include "net_test_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::eventually;
using test::frame;
using test::Inbox;
using test::mac;

std::shared_ptr<Switch> overlay(const char* json) {
  auto c = parse_overlay_config(json);
  EXPECT_TRUE(c) << c.error().what();
  auto sw = make_overlay(*c);
  EXPECT_TRUE(sw) << sw.error().what();
  return *sw;
}

// A UDP socket on 127.0.0.1 (any port) for sending raw packets, or to find a free port.
struct RawSocket {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  Endpoint local;
  RawSocket() {
    sockaddr_in sa = Endpoint{0x7f000001, 0}.sockaddr();
    EXPECT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
    socklen_t len = sizeof sa;
    EXPECT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len), 0);
    local = Endpoint::from(sa);
  }
  ~RawSocket() { close(fd); }
  void send_to(const Endpoint& to, const Bytes& p) {
    sockaddr_in sa = to.sockaddr();
    EXPECT_EQ(sendto(fd, p.data(), p.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa),
              static_cast<ssize_t>(p.size()));
  }
};

class UdpOverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a = overlay(R"({"listen": "127.0.0.1:0"})");
    b = overlay(R"({"listen": "127.0.0.1:0"})");
    ASSERT_TRUE(a && b);
    a->add_peer(b->backend()->local());
    b->add_peer(a->backend()->local());
    pa = a->add_port("a0");
    pb = b->add_port("b0");
    pa->set_receiver(in_a.receiver());
    pb->set_receiver(in_b.receiver());
  }

  std::shared_ptr<Switch> a, b;
  std::shared_ptr<Port> pa, pb;
  Inbox in_a, in_b;
};

TEST_F(UdpOverlayTest, FramesCrossHosts) {
  EXPECT_NE(a->backend()->local().port, 0);
  const Bytes req = frame(MacAddress::broadcast(), mac(1), 28, 1);  // ARP-sized
  pa->send(req);
  ASSERT_TRUE(eventually([&] { return in_b.size() == 1; }));
  EXPECT_EQ(in_b.at(0), req);
  // b learned mac(1) behind a: the reply is unicast straight back.
  const Bytes reply = frame(mac(1), mac(2), 1500, 2);
  pb->send(reply);
  ASSERT_TRUE(eventually([&] { return in_a.size() == 1; }));
  EXPECT_EQ(in_a.at(0), reply);
  EXPECT_EQ(b->count(Counter::kFlooded), 1u);
  auto routes = b->routes();
  ASSERT_EQ(routes.size(), 2u);
  EXPECT_EQ(routes[0].peer, a->backend()->local());
}

TEST_F(UdpOverlayTest, MalformedPacketsFromTheNetworkAreDropped) {
  RawSocket raw;
  const Endpoint to = b->backend()->local();
  raw.send_to(to, Bytes{1, 2, 3});
  raw.send_to(to, Bytes(100, 0xee));
  Bytes wrong_net(kHeaderSize + 60);
  ASSERT_GT(encapsulate(99, frame(mac(2), mac(5)), wrong_net), 0u);
  raw.send_to(to, wrong_net);
  Bytes huge(kHeaderSize + 20000);
  ASSERT_GT(encapsulate(1, frame(mac(2), mac(5), 20000 - 14), huge), 0u);
  raw.send_to(to, huge);
  ASSERT_TRUE(eventually([&] {
    return b->count(Counter::kDropRemoteShort) == 1 && b->count(Counter::kDropRemoteBadMagic) == 1 &&
           b->count(Counter::kDropRemoteWrongNetwork) == 1 && b->count(Counter::kDropRemoteFrameTooLong) == 1;
  }));
  EXPECT_EQ(in_b.size(), 0u);
  pa->send(frame(MacAddress::broadcast(), mac(1)));
  ASSERT_TRUE(eventually([&] { return in_b.size() == 1; }));
}

TEST_F(UdpOverlayTest, VanishedPeerIsCountedAndTrafficGoesOn) {
  Endpoint gone;
  {
    RawSocket s;  // a peer that was there ...
    gone = s.local;
  }  // ... and is not any more: its port answers ICMP port unreachable
  a->add_peer(gone);
  int sent = 0;
  // Each broadcast goes to b and to the vanished peer, whose host answers ICMP port
  // unreachable; the backend reads that off the socket's error queue and reports the peer.
  pa->send(frame(MacAddress::broadcast(), mac(1), 46, static_cast<uint8_t>(sent++)));
  ASSERT_TRUE(eventually([&] { return a->count(Counter::kPeerUnreachable) > 0; }));
  // The socket-wide pending error may meet a later send to a good peer: it is retried, not lost.
  for (int i = 0; i < 20; ++i) pa->send(frame(MacAddress::broadcast(), mac(1), 46, static_cast<uint8_t>(sent++)));
  ASSERT_TRUE(eventually([&] { return in_b.size() == static_cast<size_t>(sent); }));
  // And b's traffic to a still arrives.
  pb->send(frame(mac(1), mac(2)));
  ASSERT_TRUE(eventually([&] { return in_a.size() == 1; }));
}

TEST(UdpBackend, BindErrorIsReported) {
  RawSocket taken;
  auto b = UdpBackend::open(taken.local);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().what().find("binding UDP 127.0.0.1:"), std::string::npos);
}

TEST(UdpBackend, OverlayDestroyedWhilePortsLive) {
  // The port keeps its switch (and the backend thread) alive; dropping both in either order
  // must not hang or crash.
  std::shared_ptr<Port> p;
  {
    auto sw = overlay(R"({"listen": "127.0.0.1:0"})");
    p = sw->add_port("x");
  }
  p->send(frame(MacAddress::broadcast(), mac(1)));
  p.reset();
}

}  // namespace
}  // namespace gears::vmm::net
