// virtio-net driven through VirtioMmioTransport the way Linux's virtio_net does, against a
// FakePort standing in for the switch.
#include "virtio/net.h"

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

#include "../virtio/virtio_test_util.h"
#include "net/switch.h"
#include "net_test_util.h"
#include "virtio/mmio_transport.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

using net::test::Bytes;
using net::test::FakePort;
using net::test::frame;
using net::test::mac;
using test::DriverRing;
using test::FakeIrq;
using test::MmioDriver;
using T = VirtioMmioTransport;

constexpr unsigned kNetFMac = 5;
constexpr unsigned kNetFStatus = 16;
constexpr uint32_t kHdr = 12;
// CSUM, GUEST_CSUM, GUEST_TSO4/6, GUEST_ECN, HOST_TSO4/6, HOST_ECN, MRG_RXBUF: the tests here
// drive a driver that accepts none of them (virtio_net_offload_test.cpp accepts them).
constexpr uint64_t kOffloads = 0b1011'1011'1000'0011;

class VirtioNetTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBuf = 0x100000;

  // Transmit on the kicking thread (a notify returns with the frames sent); the transmit
  // thread has its own tests (virtio_net_tx_thread_test.cpp, VirtioNetPair below).
  void create(VirtioNetOptions opts = {}) {
    opts.tx_thread = false;
    auto d = make_virtio_net(port, mac(1), opts);
    dev = d.get();
    transport = std::make_unique<T>(mem, irq, std::move(d));
    drv = std::make_unique<MmioDriver>(*transport, mem);
  }
  void start(VirtioNetOptions opts = {}) {
    create(opts);
    ASSERT_EQ(drv->rd(T::kDeviceId), kDeviceIdNet);
    ASSERT_TRUE(drv->negotiate(~kOffloads));
    drv->setup_queue(0, rxq);
    drv->setup_queue(1, txq);
    drv->driver_ok();
    ASSERT_FALSE(drv->rd(T::kStatus) & kStatusNeedsReset);
  }

  // Transmits header + frame; `split` puts the header in its own descriptor (as Linux does
  // without ANY_LAYOUT), otherwise one descriptor holds both.
  void transmit(uint16_t d, const Bytes& hdr, const Bytes& f, bool split = true) {
    const uint64_t at = kBuf + 0x4000ULL * d;
    if (split) {
      ASSERT_TRUE(mem.write(at, hdr));
      ASSERT_TRUE(mem.write(at + 0x100, f));
      txq.set_desc(d, at, static_cast<uint32_t>(hdr.size()), kDescFNext, static_cast<uint16_t>(d + 1));
      txq.set_desc(static_cast<uint16_t>(d + 1), at + 0x100, static_cast<uint32_t>(f.size()), 0);
    } else {
      Bytes all = hdr;
      all.insert(all.end(), f.begin(), f.end());
      ASSERT_TRUE(mem.write(at, all));
      txq.set_desc(d, at, static_cast<uint32_t>(all.size()), 0);
    }
    txq.make_avail(d);
    drv->notify(1);
  }
  void post_rx(uint16_t d, uint32_t len) {
    rxq.set_desc(d, rx_addr(d), len, kDescFWrite);
    rxq.make_avail(d);
    drv->notify(0);
  }
  static uint64_t rx_addr(uint16_t d) { return 0x200000 + 0x1000ULL * d; }
  Bytes read(uint64_t gpa, size_t n) {
    Bytes b(n);
    EXPECT_TRUE(mem.read(gpa, b));
    return b;
  }

  GuestMemory mem = test::make_memory();
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  std::shared_ptr<FakePort> port = std::make_shared<FakePort>();
  DriverRing rxq = DriverRing::at(mem, 0x10000, 16);
  DriverRing txq = DriverRing::at(mem, 0x20000, 16);
  VirtioNetDevice* dev = nullptr;
  std::unique_ptr<T> transport;
  std::unique_ptr<MmioDriver> drv;
};

TEST_F(VirtioNetTest, IdentityFeaturesAndConfig) {
  create();
  EXPECT_EQ(drv->rd(T::kDeviceId), 1u);
  const uint64_t f = drv->device_features();
  EXPECT_TRUE(f & feature_bit(kNetFMac));
  EXPECT_TRUE(f & feature_bit(kNetFStatus));
  EXPECT_TRUE(f & feature_bit(kFVersion1));
  EXPECT_TRUE(f & feature_bit(kFEventIdx));
  EXPECT_EQ(f & kOffloads, kOffloads);  // checksum and TSO both ways, ECN, MRG_RXBUF
  EXPECT_FALSE(f & feature_bit(10));  // no GUEST_UFO
  EXPECT_FALSE(f & feature_bit(14));  // no HOST_UFO
  EXPECT_FALSE(f & feature_bit(17));  // no control queue
  EXPECT_FALSE(f & feature_bit(3));   // no MTU unless asked
  // Linux reads the MAC one byte at a time.
  for (uint32_t i = 0; i < 6; ++i) {
    uint8_t b = 0;
    transport->read(T::kConfig + i, std::span(&b, 1));
    EXPECT_EQ(b, mac(1).bytes[i]);
  }
  uint16_t status = 0;
  transport->read(T::kConfig + 6, std::span(reinterpret_cast<uint8_t*>(&status), 2));
  EXPECT_EQ(status, 1);  // link up
}

TEST_F(VirtioNetTest, MtuIsAdvertisedWhenSet) {
  VirtioNetOptions o;
  o.mtu = 1400;
  create(o);
  EXPECT_TRUE(drv->device_features() & feature_bit(3));
  uint16_t mtu = 0;
  transport->read(T::kConfig + 10, std::span(reinterpret_cast<uint8_t*>(&mtu), 2));
  EXPECT_EQ(mtu, 1400);
}

TEST_F(VirtioNetTest, TransmitReachesPort) {
  start();
  const Bytes f1 = frame(mac(2), mac(1), 100, 1), f2 = frame(mac(3), mac(1), 46, 2);
  transmit(0, Bytes(kHdr, 0), f1, /*split=*/true);
  transmit(4, Bytes(kHdr, 0), f2, /*split=*/false);
  ASSERT_EQ(port->sent.size(), 2u);
  EXPECT_EQ(port->sent[0], f1);
  EXPECT_EQ(port->sent[1], f2);
  auto u = txq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  EXPECT_EQ(u->second, 0u);
  EXPECT_TRUE(irq->level());
  EXPECT_EQ(drv->take_interrupt(), kIsrUsedBuffer);
  EXPECT_EQ(dev->stats().tx_frames, 2u);
  EXPECT_EQ(dev->stats().tx_bytes, f1.size() + f2.size());
}

TEST_F(VirtioNetTest, MalformedTransmitIsCountedAndDropped) {
  start();
  Bytes csum(kHdr, 0), gso(kHdr, 0);
  csum[0] = 1;  // NEEDS_CSUM without CSUM negotiated
  gso[1] = 1;   // GSO_TCPV4 without HOST_TSO4
  transmit(0, Bytes(kHdr, 0), Bytes(13, 0xaa));               // shorter than an Ethernet header
  transmit(2, Bytes(kHdr, 0), frame(mac(2), mac(1), 1505));   // 1519 bytes > 1518
  transmit(4, csum, frame(mac(2), mac(1)));
  transmit(6, gso, frame(mac(2), mac(1)));
  transmit(8, Bytes(5, 0), Bytes{}, /*split=*/false);         // not even a header
  EXPECT_TRUE(port->sent.empty());
  EXPECT_EQ(dev->stats().tx_malformed, 5u);
  EXPECT_EQ(dev->stats().tx_bad_csum, 1u);
  EXPECT_EQ(dev->stats().tx_bad_gso, 1u);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(txq.next_used());  // every chain handed back
  // The queue keeps working.
  const Bytes good = frame(mac(2), mac(1), 1500);  // the largest allowed: 1514 + VLAN room
  transmit(10, Bytes(kHdr, 0), good);
  ASSERT_EQ(port->sent.size(), 1u);
  EXPECT_EQ(port->sent[0], good);
  EXPECT_FALSE(drv->rd(T::kStatus) & kStatusNeedsReset);
}

TEST_F(VirtioNetTest, ReceiveFillsPostedBuffer) {
  start();
  post_rx(0, 1530);
  const Bytes f = frame(mac(1), mac(2), 64, 7);
  port->inject(f);
  auto u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  ASSERT_EQ(u->second, kHdr + f.size());
  Bytes hdr = read(rx_addr(0), kHdr);
  EXPECT_EQ(hdr[0], 0);  // flags
  EXPECT_EQ(hdr[1], 0);  // gso none
  EXPECT_EQ(hdr[10] | hdr[11] << 8, 1);  // num_buffers
  EXPECT_EQ(read(rx_addr(0) + kHdr, f.size()), f);
  EXPECT_TRUE(irq->level());
  EXPECT_EQ(dev->stats().rx_frames, 1u);
}

TEST_F(VirtioNetTest, ReceiveAcrossSegments) {
  start();
  // Header and data in separate writable descriptors (any layout must work).
  rxq.set_desc(0, rx_addr(0), 5, kDescFWrite | kDescFNext, 1);
  rxq.set_desc(1, rx_addr(1), 2000, kDescFWrite);
  rxq.make_avail(0);
  drv->notify(0);
  const Bytes f = frame(mac(1), mac(2), 80, 3);
  port->inject(f);
  auto u = rxq.next_used();
  ASSERT_TRUE(u);
  ASSERT_EQ(u->second, kHdr + f.size());
  Bytes got = read(rx_addr(0), 5);
  Bytes rest = read(rx_addr(1), kHdr + f.size() - 5);
  got.insert(got.end(), rest.begin(), rest.end());
  EXPECT_EQ(Bytes(got.begin() + kHdr, got.end()), f);
}

TEST_F(VirtioNetTest, FramesWaitForBuffersInOrderAndAreBounded) {
  VirtioNetOptions o;
  o.rx_pending_max = 2;
  start(o);
  const Bytes f1 = frame(mac(1), mac(2), 46, 1), f2 = frame(mac(1), mac(2), 46, 2),
              f3 = frame(mac(1), mac(2), 46, 3);
  port->inject(f1);
  port->inject(f2);
  port->inject(f3);  // beyond the bound
  EXPECT_EQ(dev->stats().rx_pending, 2u);
  EXPECT_EQ(dev->stats().rx_dropped_full, 1u);
  EXPECT_EQ(rxq.used_idx(), 0);
  post_rx(0, 1530);
  post_rx(1, 1530);
  auto u1 = rxq.next_used(), u2 = rxq.next_used();
  ASSERT_TRUE(u1 && u2);
  EXPECT_EQ(read(rx_addr(0) + kHdr, f1.size()), f1);
  EXPECT_EQ(read(rx_addr(1) + kHdr, f2.size()), f2);
  EXPECT_EQ(dev->stats().rx_pending, 0u);
  EXPECT_EQ(dev->stats().rx_frames, 2u);
}

TEST_F(VirtioNetTest, TooSmallBufferDropsFrameNotQueue) {
  start();
  post_rx(0, 20);
  post_rx(1, 1530);
  const Bytes f = frame(mac(1), mac(2), 46);
  port->inject(f);  // does not fit buffer 0: dropped, buffer returned empty
  auto u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 0u);
  EXPECT_EQ(dev->stats().rx_dropped_small, 1u);
  port->inject(f);
  u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 1u);
  EXPECT_EQ(u->second, kHdr + f.size());
}

TEST_F(VirtioNetTest, ReceiveBeforeDriverOkOrAfterResetIsDropped) {
  create();
  port->inject(frame(mac(1), mac(2)));
  EXPECT_EQ(dev->stats().rx_dropped_inactive, 1u);
  ASSERT_TRUE(drv->negotiate(~kOffloads));
  drv->setup_queue(0, rxq);
  drv->setup_queue(1, txq);
  drv->driver_ok();
  port->inject(frame(mac(1), mac(2)));
  EXPECT_EQ(dev->stats().rx_pending, 1u);
  drv->wr(T::kStatus, 0);  // reset: pending frames go with the driver
  EXPECT_EQ(dev->stats().rx_pending, 0u);
  port->inject(frame(mac(1), mac(2)));
  EXPECT_EQ(dev->stats().rx_dropped_inactive, 2u);
}

TEST_F(VirtioNetTest, DeviceDetachesFromPortWhenDestroyed) {
  start();
  EXPECT_TRUE(port->attached());
  transport.reset();
  EXPECT_FALSE(port->attached());
  port->inject(frame(mac(1), mac(2)));  // nobody home: nothing happens
}

// Two guests on one switch transmitting to each other at the same time: each transmit path
// ends in the other device's receive path, which must not deadlock (separate TX/RX locks).
// With the transmit thread the drivers notify only when EVENT_IDX asks them to, as Linux
// does: a lost wakeup leaves frames in a ring and the test times out.
class VirtioNetPair : public ::testing::TestWithParam<bool> {};

TEST_P(VirtioNetPair, TwoGuestsTransmitToEachOtherConcurrently) {
  const bool tx_thread = GetParam();
  auto sw = *net::Switch::create({}, nullptr);
  struct Guest {
    GuestMemory mem = test::make_memory();
    std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
    DriverRing rxq = DriverRing::at(mem, 0x10000, 16);
    DriverRing txq = DriverRing::at(mem, 0x20000, 16);
    VirtioNetDevice* dev = nullptr;
    std::unique_ptr<T> transport;
    std::unique_ptr<MmioDriver> drv;
  };
  Guest g[2];
  VirtioNetOptions opts;
  opts.tx_thread = tx_thread;
  for (uint8_t i = 0; i < 2; ++i) {
    auto d = make_virtio_net(sw->add_port("g" + std::to_string(i)), mac(i), opts);
    g[i].dev = d.get();
    g[i].transport = std::make_unique<T>(g[i].mem, g[i].irq, std::move(d));
    g[i].drv = std::make_unique<MmioDriver>(*g[i].transport, g[i].mem);
    ASSERT_TRUE(g[i].drv->negotiate(~0ULL));
    g[i].drv->setup_queue(0, g[i].rxq);
    g[i].drv->setup_queue(1, g[i].txq);
    g[i].drv->driver_ok();
    for (uint16_t b = 0; b < 16; ++b) {
      g[i].rxq.set_desc(b, 0x200000 + 0x1000ULL * b, 1600, kDescFWrite);
      g[i].rxq.make_avail(b);
    }
    g[i].drv->notify(0);
  }
  constexpr int kFrames = 2000;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  // Waits until at most `in_flight` frames are not yet used; false at the deadline.
  auto wait_used = [&](Guest& me, int made, int in_flight) {
    while (made - me.txq.used_idx() > in_flight) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      std::this_thread::yield();
    }
    return true;
  };
  auto run = [&](int i) {
    Guest& me = g[i];
    Bytes pkt(kHdr, 0);
    const Bytes f = frame(mac(static_cast<uint8_t>(1 - i)), mac(static_cast<uint8_t>(i)), 100);
    pkt.insert(pkt.end(), f.begin(), f.end());
    EXPECT_TRUE(me.mem.write(0x100000, pkt));
    for (int n = 0; n < kFrames; ++n) {
      const auto d = static_cast<uint16_t>(n % 16);
      if (!wait_used(me, n, 15)) break;  // descriptor d is free again
      me.txq.set_desc(d, 0x100000, static_cast<uint32_t>(pkt.size()), 0);
      if (me.txq.make_avail_batch({d})) me.drv->notify(1);
    }
    EXPECT_TRUE(wait_used(me, kFrames, 0)) << "guest " << i << ": frames left in the ring";
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();
  for (auto& x : g) {
    const VirtioNetStats s = x.dev->stats();
    EXPECT_EQ(s.tx_frames, static_cast<uint64_t>(kFrames));
    EXPECT_EQ(s.rx_frames + s.rx_pending + s.rx_dropped_full, static_cast<uint64_t>(kFrames));
    EXPECT_EQ(s.rx_frames, 16u);
    EXPECT_LE(s.tx_kicks, static_cast<uint64_t>(kFrames) + 1);
  }
  EXPECT_EQ(sw->count(net::Counter::kPortRxFrames), 2u * kFrames);
}

INSTANTIATE_TEST_SUITE_P(Transmit, VirtioNetPair, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "OnItsThread" : "OnTheVcpu"; });

}  // namespace
}  // namespace gears::vmm::virtio
