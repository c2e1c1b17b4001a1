// virtio-net's receive buffers and notifications through VirtioMmioTransport: mergeable
// receive buffers (spanning, waiting for the driver in order, a frame larger than the ring, a
// buffer too small for the header) and EVENT_IDX suppression of kicks and interrupts both ways.
#include <gtest/gtest.h>

#include "net_guest_util.h"
#include "net_test_util.h"

namespace gears::vmm::virtio {
namespace {

using net::test::Bytes;
using test::Guest;
using test::OffloadTest;
using test::kLinux;

TEST_F(OffloadTest, MergeableFrameWaitsForEnoughBuffersInOrder) {
  g.start(port, kLinux);
  g.post_rx(0, 1000);
  g.post_rx(1, 1000);
  const Bytes big = net::test::frame(net::test::mac(1), net::test::mac(2), 3500, 9);
  const Bytes next = net::test::frame(net::test::mac(1), net::test::mac(2), 60, 4);
  port->inject(big);   // needs 4 buffers; 2 posted (held for it)
  port->inject(next);  // waits behind it
  EXPECT_FALSE(g.receive());
  EXPECT_EQ(g.dev->stats().rx_pending, 2u);
  g.post_rx(2, 1000);
  EXPECT_FALSE(g.receive());
  g.post_rx(3, 1000);
  g.post_rx(4, 1000);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->buffers, 4);
  EXPECT_EQ(r->frame, big);
  r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frame, next);
  EXPECT_EQ(g.dev->stats().rx_pending, 0u);
  EXPECT_EQ(g.dev->stats().rx_merged, 1u);
}

TEST_F(OffloadTest, MergeableFrameLargerThanTheWholeRingIsDropped) {
  g.start(port, kLinux, /*rx_size=*/4);
  for (uint16_t d = 0; d < 4; ++d) g.add_rx(d, 100);
  g.drv->notify(0);
  port->inject(net::test::frame(net::test::mac(1), net::test::mac(2), 1000));
  EXPECT_EQ(g.dev->stats().rx_dropped_small, 1u);
  EXPECT_EQ(g.dev->stats().rx_pending, 0u);
  // The buffers stay usable for frames that fit.
  const Bytes small = net::test::frame(net::test::mac(1), net::test::mac(2), 100);
  port->inject(small);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->buffers, 2);
  EXPECT_EQ(r->frame, small);
}

TEST_F(OffloadTest, MergeableBufferTooSmallForTheHeaderIsReturnedEmpty) {
  g.start(port, kLinux);
  g.post_rx(0, 8);
  g.post_rx(1, 2000);
  const Bytes fr = net::test::frame(net::test::mac(1), net::test::mac(2), 200);
  port->inject(fr);
  auto u = g.rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  EXPECT_EQ(u->second, 0u);
  auto r = g.receive();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->frame, fr);
}

// EVENT_IDX through the real transport: the driver does not notify while the device has
// buffers it has not used yet, and the device interrupts only when the driver asks.
TEST_F(OffloadTest, EventIdxSuppressesRxNotificationsAndInterrupts) {
  g.start(port, kLinux);
  const uint16_t old = g.rxq.avail_idx;
  for (uint16_t d = 0; d < 8; ++d) g.add_rx(d, 1526);
  EXPECT_TRUE(test::need_event(g.rxq.avail_event(), g.rxq.avail_idx, old));  // device idle: kick
  g.drv->notify(0);
  // NAPI after an interrupt: callbacks off (used_event left behind), poll.
  g.rxq.set_used_event(0);
  const Bytes fr = net::test::frame(net::test::mac(1), net::test::mac(2), 100);
  for (int i = 0; i < 5; ++i) port->inject(fr);
  EXPECT_EQ(g.irq->levels(), std::vector<bool>{true});  // one interrupt for five frames
  EXPECT_EQ(g.drv->take_interrupt(), kIsrUsedBuffer);
  g.rxq.last_used = g.rxq.used_idx();  // the poll took all five
  // Refill 4 while the device still has 3 posted buffers: no notification (no exit).
  EXPECT_FALSE(g.rxq.make_avail_batch({0, 1, 2, 3}));
  for (int i = 0; i < 2; ++i) port->inject(fr);  // the device does not need a kick to see them
  EXPECT_EQ(g.rxq.used_idx(), 7);
  EXPECT_EQ(g.irq->levels().size(), 2u);  // (the ACK dropped the line; no new interrupt)
  // The poll takes those too, then callbacks back on (used_event = last_used, as
  // virtqueue_enable_cb): the next frame interrupts.
  g.rxq.last_used = g.rxq.used_idx();
  g.rxq.set_used_event(g.rxq.last_used);
  port->inject(fr);
  EXPECT_EQ(g.irq->levels().size(), 3u);
  EXPECT_TRUE(g.irq->level());
  // The device's own counts: 8 frames, 2 interrupts; kicks: the transport's one at DRIVER_OK
  // and the driver's first refill.
  EXPECT_EQ(g.dev->stats().rx_frames, 8u);
  EXPECT_EQ(g.dev->stats().rx_interrupts, 2u);
  EXPECT_EQ(g.dev->stats().rx_kicks, 2u);
}

// TX: one notify drains every chain made available (a batch); with EVENT_IDX the driver's
// next notify is needed only once the device has gone idle, and the completion interrupt
// follows used_event (Linux's virtqueue_enable_cb_delayed asks for one after 3/4 of them).
TEST_F(OffloadTest, EventIdxTransmitBatchOneNotifyOneInterrupt) {
  g.start(port, kLinux);
  const Bytes fr = net::test::frame(net::test::mac(2), net::test::mac(1), 100);
  const NetHdr h{};
  ASSERT_TRUE(g.mem.write(Guest::kTxData, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h)));
  ASSERT_TRUE(g.mem.write(Guest::kTxData + sizeof h, fr));
  for (uint16_t d = 0; d < 8; ++d) g.txq.set_desc(d, Guest::kTxData, static_cast<uint32_t>(sizeof h + fr.size()), 0);
  g.txq.set_used_event(5);
  EXPECT_TRUE(g.txq.make_avail_batch({0, 1, 2, 3, 4, 5, 6, 7}));
  g.drv->notify(1);
  EXPECT_EQ(port->sent.size(), 8u);  // all drained by one notify
  EXPECT_EQ(g.txq.used_idx(), 8);
  EXPECT_EQ(g.irq->levels(), std::vector<bool>{true});
  EXPECT_EQ(g.txq.avail_event(), 8);  // idle again: the next packet notifies
  EXPECT_TRUE(g.txq.make_avail_batch({0}));
  EXPECT_EQ(g.dev->stats().tx_kicks, 2u);  // DRIVER_OK's and the driver's
  EXPECT_EQ(g.dev->stats().tx_interrupts, 1u);
}

}  // namespace
}  // namespace gears::vmm::virtio
