// Two "hosts" as network namespaces joined by a veth pair, one overlay in each: frames cross
// the veth encapsulated in UDP, and when the peer host goes away (its overlay closes, then the
// link disappears) the loss is counted while local traffic keeps flowing.
// Needs root (CAP_NET_ADMIN) and iproute2; skipped otherwise. Namespaces and links are named
// after the test's pid and removed at the end.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "net/overlay_config.h"
#include "net_test_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::eventually;
using test::frame;
using test::Inbox;
using test::mac;

bool sh(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()) == 0; }

// Runs make_overlay() on a thread that has entered namespace `ns`: the UDP socket belongs to
// the namespace it was created in, whichever thread uses it later.
std::shared_ptr<Switch> overlay_in(const std::string& ns, const std::string& json) {
  std::shared_ptr<Switch> sw;
  std::thread t([&] {
    const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) return;
    close(fd);
    auto c = parse_overlay_config(json);
    if (!c) return;
    auto s = make_overlay(*c);
    if (s) sw = *s;
  });
  t.join();
  return sw;
}

class NetnsOverlayTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
    const std::string id = std::to_string(getpid());
    ns_a = "gears-net-" + id + "-a";
    ns_b = "gears-net-" + id + "-b";
    veth_a = "gna" + id;
    veth_b = "gnb" + id;
    if (!sh("ip netns add " + ns_a) || !sh("ip netns add " + ns_b)) GTEST_SKIP() << "cannot create network namespaces";
    created = true;
    ASSERT_TRUE(sh("ip link add " + veth_a + " netns " + ns_a + " type veth peer name " + veth_b + " netns " + ns_b));
    ASSERT_TRUE(sh("ip -n " + ns_a + " addr add 10.250.0.1/24 dev " + veth_a));
    ASSERT_TRUE(sh("ip -n " + ns_b + " addr add 10.250.0.2/24 dev " + veth_b));
    ASSERT_TRUE(sh("ip -n " + ns_a + " link set " + veth_a + " up"));
    ASSERT_TRUE(sh("ip -n " + ns_b + " link set " + veth_b + " up"));
  }
  void TearDown() override {
    a.reset();
    b.reset();
    if (!created) return;
    sh("ip netns del " + ns_a);
    sh("ip netns del " + ns_b);
  }

  std::string ns_a, ns_b, veth_a, veth_b;
  bool created = false;
  std::shared_ptr<Switch> a, b;
};

TEST_F(NetnsOverlayTest, FramesCrossTheVethAndAVanishedHostIsSurvived) {
  a = overlay_in(ns_a, R"({"listen": "10.250.0.1:7878", "peers": ["10.250.0.2:7878"]})");
  b = overlay_in(ns_b, R"({"listen": "10.250.0.2:7878", "peers": ["10.250.0.1:7878"]})");
  ASSERT_TRUE(a && b);
  auto pa = a->add_port("a0"), pa2 = a->add_port("a1"), pb = b->add_port("b0");
  Inbox in_a, in_a2, in_b;
  pa->set_receiver(in_a.receiver());
  pa2->set_receiver(in_a2.receiver());
  pb->set_receiver(in_b.receiver());

  const Bytes arp = frame(MacAddress::broadcast(), mac(1), 28, 1);
  pa->send(arp);
  ASSERT_TRUE(eventually([&] { return in_b.size() == 1; }));
  EXPECT_EQ(in_b.at(0), arp);
  const Bytes reply = frame(mac(1), mac(2), 1400, 2);
  pb->send(reply);
  ASSERT_TRUE(eventually([&] { return in_a.size() == 1; }));
  EXPECT_EQ(in_a.at(0), reply);
  EXPECT_EQ(in_a2.size(), 1u);  // the local copy of the broadcast only

  // Host b's overlay goes away: its kernel answers with ICMP port unreachable.
  pb.reset();
  b.reset();
  int n = 0;
  ASSERT_TRUE(eventually([&] {
    pa->send(frame(mac(2), mac(1), 46, static_cast<uint8_t>(n++)));
    return a->count(Counter::kPeerUnreachable) > 0;
  }));
  // What a learned behind b is forgotten: frames to mac(2) flood again (here: to a1).
  const size_t before = in_a2.size();
  pa->send(frame(mac(2), mac(1)));
  EXPECT_EQ(in_a2.size(), before + 1);

  // Then the link itself disappears: sends fail at once (no route) and are counted.
  ASSERT_TRUE(sh("ip -n " + ns_a + " link del " + veth_a));
  const uint64_t drops = a->count(Counter::kDropSendUnreachable);
  pa->send(frame(MacAddress::broadcast(), mac(1)));
  EXPECT_EQ(a->count(Counter::kDropSendUnreachable), drops + 1);
  EXPECT_EQ(in_a2.size(), before + 2);  // local traffic is unaffected
}

}  // namespace
}  // namespace gears::vmm::net
