// The wire format, address parsing and the overlay configuration file.
#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

#include "gears/abi/overlay.h"
#include "net/address.h"
#include "net/encap.h"
#include "net/overlay_config.h"
#include "net_test_util.h"

namespace gears::vmm::net {
namespace {

using test::Bytes;
using test::frame;
using test::mac;

TEST(Encap, HeaderIsBigEndianAndRoundTrips) {
  const Bytes f = frame(mac(2), mac(1), 100, 9);
  Bytes p(kHeaderSize + f.size());
  ASSERT_EQ(encapsulate(0x01020304, f, p), p.size());
  const uint8_t expect[12] = {'G', 'O', 'V', 'L', 1, 0, 0, static_cast<uint8_t>(f.size()), 1, 2, 3, 4};
  EXPECT_EQ(std::memcmp(p.data(), expect, 12), 0);
  auto d = decapsulate(p, 0x01020304, max_frame_for_mtu(1500));
  ASSERT_EQ(d.error, DecapError::kNone);
  EXPECT_EQ(Bytes(d.frame.begin(), d.frame.end()), f);
}

TEST(Encap, RefusesSmallOutputBuffer) {
  const Bytes f = frame(mac(2), mac(1));
  Bytes p(kHeaderSize + f.size() - 1);
  EXPECT_EQ(encapsulate(1, f, p), 0u);
}

TEST(Encap, JumboNeedsALargerMaximum) {
  const Bytes f = frame(mac(2), mac(1), 9000);
  Bytes p(kHeaderSize + f.size());
  ASSERT_EQ(encapsulate(1, f, p), p.size());
  EXPECT_EQ(decapsulate(p, 1, max_frame_for_mtu(1500)).error, DecapError::kFrameTooLong);
  EXPECT_EQ(decapsulate(p, 1, max_frame_for_mtu(9000)).error, DecapError::kNone);
}

TEST(Address, Mac) {
  auto m = parse_mac("52:54:00:AB:cd:0f");
  ASSERT_TRUE(m);
  EXPECT_EQ(to_string(*m), "52:54:00:ab:cd:0f");
  EXPECT_TRUE(parse_mac("52-54-00-ab-cd-0f"));
  EXPECT_FALSE(parse_mac("52:54:00:ab:cd"));
  EXPECT_FALSE(parse_mac("52:54:00:ab:cd:0g"));
  EXPECT_FALSE(parse_mac("52:54-00:ab:cd:0f"));
  EXPECT_TRUE(MacAddress::broadcast().is_multicast());
  EXPECT_FALSE(mac(1).is_multicast());
}

TEST(Address, Endpoint) {
  auto e = parse_endpoint("10.1.2.3:4567");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->ip, 0x0a010203u);
  EXPECT_EQ(e->port, 4567);
  EXPECT_EQ(to_string(*e), "10.1.2.3:4567");
  EXPECT_EQ(parse_endpoint("10.1.2.3", 7878)->port, 7878);
  EXPECT_FALSE(parse_endpoint("10.1.2.3"));
  EXPECT_FALSE(parse_endpoint("10.1.2:80"));
  EXPECT_FALSE(parse_endpoint("10.1.2.3:65536"));
  EXPECT_FALSE(parse_endpoint("10.1.2.3:x"));
  EXPECT_FALSE(parse_endpoint("host.example:80"));
  const sockaddr_in sa = e->sockaddr();
  EXPECT_EQ(Endpoint::from(sa), *e);
}

TEST(OverlayConfig, FullFile) {
  auto c = parse_overlay_config(R"({
    "listen": "127.0.0.1:0", "network": 42, "mtu": 1400, "ageing_s": 60, "max_macs": 10,
    "strict_peers": true,
    "peers": ["10.0.0.2:7000", "10.0.0.3"],
    "routes": [{"mac": "52:54:00:00:00:07", "peer": "10.0.0.4:7001"}]
  })");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->listen, (Endpoint{0x7f000001, 0}));
  EXPECT_EQ(c->options.network, 42u);
  EXPECT_EQ(c->options.mtu, 1400u);
  EXPECT_EQ(c->options.ageing, std::chrono::seconds(60));
  EXPECT_EQ(c->options.max_entries, 10u);
  EXPECT_TRUE(c->options.strict_peers);
  ASSERT_EQ(c->peers.size(), 2u);
  EXPECT_EQ(c->peers[1].port, GEARS_OVERLAY_DEFAULT_PORT);
  ASSERT_EQ(c->routes.size(), 1u);
  EXPECT_EQ(c->routes[0].first, mac(7));
  EXPECT_EQ(c->routes[0].second, (Endpoint{0x0a000004, 7001}));
}

TEST(OverlayConfig, Defaults) {
  auto c = parse_overlay_config("{}");
  ASSERT_TRUE(c);
  EXPECT_EQ(c->listen.port, GEARS_OVERLAY_DEFAULT_PORT);
  EXPECT_EQ(c->options.mtu, GEARS_OVERLAY_DEFAULT_MTU);
  EXPECT_TRUE(c->routes.empty());
}

TEST(OverlayConfig, ErrorsSayWhatIsWrong) {
  auto bad = [](const char* text) {
    auto c = parse_overlay_config(text);
    return c ? std::string() : c.error().message;
  };
  EXPECT_NE(bad("{").find("not valid JSON"), std::string::npos);
  EXPECT_NE(bad("[]").find("object"), std::string::npos);
  EXPECT_NE(bad(R"({"peer": []})").find("unknown key \"peer\""), std::string::npos);
  EXPECT_NE(bad(R"({"mtu": 9001})").find("mtu"), std::string::npos);
  EXPECT_NE(bad(R"({"mtu": -1})").find("mtu"), std::string::npos);
  EXPECT_NE(bad(R"({"listen": 7})").find("listen"), std::string::npos);
  EXPECT_NE(bad(R"({"peers": ["10.0.0.1:x"]})").find("port"), std::string::npos);
  EXPECT_NE(bad(R"({"routes": [{"mac": "zz"}]})").find("\"peer\""), std::string::npos);
  EXPECT_NE(bad(R"({"routes": [{"mac": "zz", "peer": "10.0.0.1:1"}]})").find("MAC"), std::string::npos);
  EXPECT_NE(bad(R"({"strict_peers": 1})").find("strict_peers"), std::string::npos);
}

TEST(OverlayConfig, DpdkSection) {
  auto c = parse_overlay_config(R"({
    "listen": "10.0.0.1:7878", "backend": "dpdk",
    "dpdk": {"vdev": "net_af_packet0,iface=eth1", "eal": ["--log-level", "*:error"],
             "neighbors": {"10.0.0.2": "52:54:00:00:00:02"}, "gateway": "52:54:00:00:00:fe"}
  })");
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->backend, OverlayConfig::BackendKind::kDpdk);
  EXPECT_EQ(c->dpdk.vdev, "net_af_packet0,iface=eth1");
  EXPECT_EQ(c->dpdk.eal_args.size(), 2u);
  EXPECT_EQ(c->dpdk.neighbors.at(0x0a000002), mac(2));
  EXPECT_EQ(*c->dpdk.gateway, mac(0xfe));
  EXPECT_EQ(c->dpdk.local, (Endpoint{0x0a000001, 7878}));
  EXPECT_FALSE(parse_overlay_config(R"({"backend": "dpdk"})"));  // no vdev
  EXPECT_FALSE(parse_overlay_config(R"({"backend": "tap"})"));
  EXPECT_FALSE(parse_overlay_config(R"({"dpdk": {"vdev": "x", "cores": 2}})"));
  if (!DpdkBackend::available()) {
    auto sw = make_overlay(*c);
    ASSERT_FALSE(sw);
    EXPECT_NE(sw.error().what().find("built without DPDK"), std::string::npos);
  }
}

TEST(NicSpec, Parses) {
  auto n = parse_nic_spec("mac=52:54:00:00:00:05,overlay=/etc/gears/ovl.json,mtu=1446");
  ASSERT_TRUE(n) << n.error().what();
  EXPECT_EQ(n->mac, mac(5));
  EXPECT_EQ(n->overlay, "/etc/gears/ovl.json");
  EXPECT_EQ(n->mtu, 1446);
  n = parse_nic_spec("mac=52:54:00:00:00:06");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->overlay.empty());
  EXPECT_EQ(n->mtu, 0);
  auto err = [](const char* t) { return parse_nic_spec(t).error().message; };
  EXPECT_NE(err("overlay=x.json").find("mac"), std::string::npos);
  EXPECT_NE(err("mac=ff:ff:ff:ff:ff:ff").find("station"), std::string::npos);
  EXPECT_NE(err("mac=52:54:00:00:00:06,mtu=10").find("mtu"), std::string::npos);
  EXPECT_NE(err("mac=52:54:00:00:00:06,speed=10").find("unknown key 'speed'"), std::string::npos);
  EXPECT_NE(err("mac=52:54:00:00:00:06,overlay").find("key=value"), std::string::npos);
}

TEST(OverlayConfig, MissingFile) {
  auto c = load_overlay_config("/nonexistent/overlay.json");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().what().find("/nonexistent/overlay.json"), std::string::npos);
}

}  // namespace
}  // namespace gears::vmm::net
