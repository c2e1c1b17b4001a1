// Test helpers for virtio-net with offloads: the feature sets Linux negotiates, a TX header
// for an Offload, and one guest NIC (memory, VirtioMmioTransport, driver-side rings) with a
// transmit that splits the frame over descriptors and a receive that merges num_buffers.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <optional>

#include "../virtio/virtio_test_util.h"
#include "net/offload.h"
#include "net/port.h"
#include "net_test_util.h"
#include "virtio/mmio_transport.h"
#include "virtio/net.h"
#include "virtio/net_hdr.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio::test {

using net::Gso;
using net::Offload;
using net::test::Bytes;
using T = VirtioMmioTransport;

constexpr uint64_t f(unsigned bit) { return feature_bit(bit); }
constexpr uint64_t kBase = f(kFVersion1) | f(kFEventIdx) | f(kFIndirectDesc) | f(kNetFMac) | f(kNetFStatus);
constexpr uint64_t kCsumBoth = f(kNetFCsum) | f(kNetFGuestCsum);
constexpr uint64_t kTsoHost = f(kNetFHostTso4) | f(kNetFHostTso6) | f(kNetFHostEcn);
constexpr uint64_t kTsoGuest = f(kNetFGuestTso4) | f(kNetFGuestTso6) | f(kNetFGuestEcn);
// What Linux 6.1's virtio_net accepts from this device.
constexpr uint64_t kLinux = kBase | kCsumBoth | kTsoHost | kTsoGuest | f(kNetFMrgRxbuf);

// Transmit on the kicking thread: a notify returns with the frames sent, which the tests of
// the device's logic rely on (virtio_net_tx_thread_test.cpp covers the transmit thread).
inline VirtioNetOptions inline_tx(VirtioNetOptions o = {}) {
  o.tx_thread = false;
  return o;
}

inline NetHdr tso_hdr(const Offload& o) {
  NetHdr h{};
  h.flags = o.needs_csum ? kHdrFNeedsCsum : 0;
  h.gso_type = o.gso == Gso::kTcpV4 ? kGsoTcpV4 : o.gso == Gso::kTcpV6 ? kGsoTcpV6 : kGsoNone;
  if (o.gso_ecn) h.gso_type |= kGsoEcn;
  h.hdr_len = o.hdr_len;
  h.gso_size = o.gso_size;
  h.csum_start = o.csum_start;
  h.csum_offset = o.csum_offset;
  return h;
}

// One guest NIC: memory, transport, driver-side rings.
struct Guest {
  static constexpr uint64_t kTxData = 0x100000;
  static constexpr uint64_t kRxData = 0x400000;
  static constexpr uint64_t kRxStride = 0x11000;  // room for a 64 KiB + header buffer

  GuestMemory mem = test::make_memory(16 << 20);
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  DriverRing rxq, txq;
  VirtioNetDevice* dev = nullptr;
  std::unique_ptr<T> transport;
  std::unique_ptr<MmioDriver> drv;
  uint16_t tx_next = 0;
  bool mergeable = false;

  void start(std::shared_ptr<net::Port> port, uint64_t accept, uint16_t rx_size = 64,
             VirtioNetOptions opts = inline_tx()) {
    rxq = DriverRing::at(mem, 0x10000, rx_size);
    txq = DriverRing::at(mem, 0x20000, 64);
    auto d = make_virtio_net(std::move(port), net::test::mac(1), opts);
    dev = d.get();
    transport = std::make_unique<T>(mem, irq, std::move(d));
    drv = std::make_unique<MmioDriver>(*transport, mem);
    ASSERT_TRUE(drv->negotiate(accept));
    mergeable = (accept & f(kNetFMrgRxbuf)) != 0;
    drv->setup_queue(0, rxq);
    drv->setup_queue(1, txq);
    drv->driver_ok();
    ASSERT_FALSE(drv->rd(T::kStatus) & kStatusNeedsReset);
  }

  // Header in its own descriptor, then the frame in `pieces` descriptors (as Linux's sg list).
  void transmit(const NetHdr& h, const Bytes& frame, int pieces = 3) {
    const auto n = static_cast<uint16_t>(1 + pieces);
    if (tx_next + n > txq.size) tx_next = 0;
    const uint16_t head = tx_next;
    ASSERT_TRUE(mem.write(kTxData, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h)));
    ASSERT_TRUE(mem.write(kTxData + 0x100, frame));
    txq.set_desc(head, kTxData, sizeof h, kDescFNext, static_cast<uint16_t>(head + 1));
    size_t done = 0;
    for (int i = 0; i < pieces; ++i) {
      const size_t len = i + 1 == pieces ? frame.size() - done : frame.size() / static_cast<size_t>(pieces);
      const auto d = static_cast<uint16_t>(head + 1 + i);
      txq.set_desc(d, kTxData + 0x100 + done, static_cast<uint32_t>(len), i + 1 == pieces ? 0 : kDescFNext,
                   static_cast<uint16_t>(d + 1));
      done += len;
    }
    tx_next = static_cast<uint16_t>(tx_next + n);
    txq.make_avail(head);
    drv->notify(1);
    ASSERT_TRUE(txq.next_used());
  }

  static uint64_t rx_addr(uint16_t d) { return kRxData + kRxStride * d; }
  // Posts buffer `d` (`ndesc` descriptors of len/ndesc bytes each, contiguous, as Linux's big
  // packets) without notifying.
  void add_rx(uint16_t d, uint32_t len, uint16_t ndesc = 1) {
    // Chains use descriptors [d*ndesc, (d+1)*ndesc): tests keep them apart.
    const auto first = static_cast<uint16_t>(d * ndesc);
    for (uint16_t i = 0; i < ndesc; ++i) {
      const uint32_t part = len / ndesc;
      const bool last = i + 1 == ndesc;
      rxq.set_desc(static_cast<uint16_t>(first + i), rx_addr(d) + uint64_t{part} * i, last ? len - part * i : part,
                   static_cast<uint16_t>(kDescFWrite | (last ? 0 : kDescFNext)), static_cast<uint16_t>(first + i + 1));
    }
    rxq.make_avail(first);
  }
  void post_rx(uint16_t d, uint32_t len, uint16_t ndesc = 1) {
    add_rx(d, len, ndesc);
    drv->notify(0);
  }

  struct Rx {
    NetHdr hdr{};
    Bytes frame;
    uint16_t buffers = 0;
  };
  // The next received frame: the used entry's buffer, and with MRG_RXBUF the num_buffers - 1
  // entries that follow (as Linux's receive_mergeable). `ndesc` = descriptors per chain.
  std::optional<Rx> receive(uint16_t ndesc = 1) {
    auto u = rxq.next_used();
    if (!u) return std::nullopt;
    Rx r;
    const uint16_t d = static_cast<uint16_t>(u->first / ndesc);
    EXPECT_GE(u->second, sizeof(NetHdr));
    if (u->second < sizeof(NetHdr)) return r;
    r.hdr = *mem.read_obj<NetHdr>(rx_addr(d));
    r.frame.resize(u->second - sizeof(NetHdr));
    EXPECT_TRUE(mem.read(rx_addr(d) + sizeof(NetHdr), r.frame));
    r.buffers = 1;
    for (uint16_t i = 1; i < r.hdr.num_buffers; ++i) {
      auto more = rxq.next_used();
      EXPECT_TRUE(more);
      if (!more) break;
      Bytes part(more->second);
      EXPECT_TRUE(mem.read(rx_addr(static_cast<uint16_t>(more->first / ndesc)), part));
      r.frame.insert(r.frame.end(), part.begin(), part.end());
      ++r.buffers;
    }
    return r;
  }
};

class OffloadTest : public ::testing::Test {
 protected:
  std::shared_ptr<net::test::FakePort> port = std::make_shared<net::test::FakePort>();
  Guest g;
};

}  // namespace gears::vmm::virtio::test
