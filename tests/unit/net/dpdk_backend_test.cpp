// The DPDK backend (built with -DGEARS_WITH_DPDK=ON) against the kernel's UDP stack: host a is
// a network namespace running the socket backend at 10.251.0.1; host b is DPDK's net_af_packet
// on the other end of a veth pair, answering ARP for 10.251.0.2 itself. Needs root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <string>
#include <thread>

#include "net/dpdk_backend.h"
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

std::shared_ptr<Switch> overlay_in(const std::string& ns, const std::string& json, std::string* error) {
  std::shared_ptr<Switch> sw;
  std::thread t([&] {
    const int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) return;
    close(fd);
    auto c = parse_overlay_config(json);
    if (!c) {
      *error = c.error().what();
      return;
    }
    auto s = make_overlay(*c);
    if (s) sw = *s;
    else *error = s.error().what();
  });
  t.join();
  return sw;
}

TEST(DpdkBackend, TalksToTheKernelOverAVeth) {
  ASSERT_TRUE(DpdkBackend::available());
  if (geteuid() != 0) GTEST_SKIP() << "needs root for network namespaces";
  const std::string id = std::to_string(getpid());
  const std::string ns_a = "gears-dpdk-" + id + "-a", ns_b = "gears-dpdk-" + id + "-b";
  const std::string veth_a = "gda" + id, veth_b = "gdb" + id;
  if (!sh("ip netns add " + ns_a) || !sh("ip netns add " + ns_b)) GTEST_SKIP() << "cannot create network namespaces";
  struct Cleanup {
    std::string a, b;
    ~Cleanup() {
      sh("ip netns del " + a);
      sh("ip netns del " + b);
    }
  } cleanup{ns_a, ns_b};
  ASSERT_TRUE(sh("ip link add " + veth_a + " netns " + ns_a + " type veth peer name " + veth_b + " netns " + ns_b));
  ASSERT_TRUE(sh("ip -n " + ns_a + " addr add 10.251.0.1/24 dev " + veth_a));
  ASSERT_TRUE(sh("ip -n " + ns_a + " link set " + veth_a + " up"));
  ASSERT_TRUE(sh("ip -n " + ns_b + " link set " + veth_b + " up"));  // no kernel IP: DPDK owns .2

  std::string err;
  auto a = overlay_in(ns_a, R"({"listen": "10.251.0.1:7878", "peers": ["10.251.0.2:7878"]})", &err);
  ASSERT_TRUE(a) << err;
  auto b = overlay_in(ns_b, R"({"listen": "10.251.0.2:7878", "peers": ["10.251.0.1:7878"],
                               "backend": "dpdk", "dpdk": {"vdev": "net_af_packet0,iface=)" + veth_b + R"("}})",
                      &err);
  ASSERT_TRUE(b) << err;
  EXPECT_EQ(b->backend()->name(), "dpdk");
  auto pa = a->add_port("a0"), pb = b->add_port("b0");
  Inbox in_a, in_b;
  pa->set_receiver(in_a.receiver());
  pb->set_receiver(in_b.receiver());

  // a -> b: the kernel ARPs for 10.251.0.2 and DPDK answers.
  const Bytes req = frame(MacAddress::broadcast(), mac(1), 28, 1);
  ASSERT_TRUE(eventually([&] {
    if (in_b.size() == 0) pa->send(req);  // the first may be lost while ARP resolves
    return in_b.size() > 0;
  }));
  EXPECT_EQ(in_b.at(0), req);
  // b -> a: DPDK learned a's MAC from that ARP request; the reply is unicast back.
  const Bytes reply = frame(mac(1), mac(2), 1400, 2);
  pb->send(reply);
  ASSERT_TRUE(eventually([&] { return in_a.size() > 0; }));
  EXPECT_EQ(in_a.at(0), reply);
  EXPECT_GE(b->count(Counter::kRemoteRxPackets), 1u);
  EXPECT_EQ(b->count(Counter::kRemoteTxPackets), 1u);

  pa.reset();
  pb.reset();
  a.reset();
  b.reset();  // stops the DPDK port and removes the vdev
}

}  // namespace
}  // namespace gears::vmm::net
