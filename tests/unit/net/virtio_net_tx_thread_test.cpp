// virtio-net's transmit thread: a kick only wakes it, it drains with the driver's notifications
// suppressed (a busy device is not kicked again), re-arms when the ring is empty, and a reset
// or the device's end waits for a drain in progress.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "net_guest_util.h"

namespace gears::vmm::virtio::test {
namespace {

using namespace std::chrono_literals;

// Holds the port's first send until released: the transmit thread is then "busy".
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool entered = false, released = false;

  void hold() {
    std::unique_lock lk(mu);
    if (entered) return;  // only the first send waits
    entered = true;
    cv.notify_all();
    cv.wait(lk, [this] { return released; });
  }
  bool wait_entered() {
    std::unique_lock lk(mu);
    return cv.wait_for(lk, 10s, [this] { return entered; });
  }
  void release() {
    std::lock_guard lk(mu);
    released = true;
    cv.notify_all();
  }
};

template <class Pred>
bool eventually(Pred p) {
  const auto end = std::chrono::steady_clock::now() + 10s;
  while (!p()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

class TxThreadTest : public OffloadTest {
 protected:
  void SetUp() override {
    fr = net::test::frame(net::test::mac(2), net::test::mac(1), 100);
    port->before_send = [this] { gate.hold(); };
    g.start(port, kLinux, 64, VirtioNetOptions{});
    const NetHdr h{};
    ASSERT_TRUE(g.mem.write(Guest::kTxData, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h)));
    ASSERT_TRUE(g.mem.write(Guest::kTxData + sizeof h, fr));
    for (uint16_t d = 0; d < 32; ++d)
      g.txq.set_desc(d, Guest::kTxData, static_cast<uint32_t>(sizeof h + fr.size()), 0);
    // DRIVER_OK's kick ran a drain that re-armed notifications at entry 0.
    ASSERT_TRUE(eventually([&] { return g.dev->stats().tx_passes == 1; }));
  }

  Gate gate;
  Bytes fr;
};

TEST_F(TxThreadTest, ABusyDeviceIsNotKickedAndReArmsWhenIdle) {
  ASSERT_TRUE(g.txq.make_avail_batch({0}));  // idle: the driver must kick
  g.drv->notify(1);
  ASSERT_TRUE(gate.wait_entered());
  // The thread is inside the port with frame 0: ten more frames need no kick.
  for (uint16_t d = 1; d <= 10; ++d) EXPECT_FALSE(g.txq.make_avail_batch({d})) << "frame " << d;
  gate.release();
  ASSERT_TRUE(eventually([&] { return port->sent_count() == 11 && g.txq.used_idx() == 11; }));
  // Empty again: re-armed at the next entry, so the next frame kicks.
  ASSERT_TRUE(eventually([&] { return g.txq.avail_event() == 11; }));
  EXPECT_TRUE(g.txq.make_avail_batch({11}));
  g.drv->notify(1);
  ASSERT_TRUE(eventually([&] { return port->sent_count() == 12; }));
  const VirtioNetStats s = g.dev->stats();
  EXPECT_EQ(s.tx_frames, 12u);
  EXPECT_EQ(s.tx_kicks, 3u);  // DRIVER_OK's and two of the driver's, for 12 frames
}

// Without EVENT_IDX the device suppresses with VIRTQ_USED_F_NO_NOTIFY while it drains.
TEST_F(TxThreadTest, WithoutEventIdxTheUsedFlagSuppresses) {
  Guest plain;
  auto p = std::make_shared<net::test::FakePort>();
  Gate gate2;
  p->before_send = [&] { gate2.hold(); };
  plain.start(p, kLinux & ~f(kFEventIdx), 64, VirtioNetOptions{});
  const NetHdr h{};
  ASSERT_TRUE(plain.mem.write(Guest::kTxData, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h)));
  ASSERT_TRUE(plain.mem.write(Guest::kTxData + sizeof h, fr));
  for (uint16_t d = 0; d < 4; ++d)
    plain.txq.set_desc(d, Guest::kTxData, static_cast<uint32_t>(sizeof h + fr.size()), 0);
  auto used_flags = [&] { return *plain.mem.read_obj<uint16_t>(plain.txq.used); };
  ASSERT_TRUE(eventually([&] { return plain.dev->stats().tx_passes == 1; }));
  EXPECT_EQ(used_flags(), 0);
  plain.txq.make_avail(0);
  plain.drv->notify(1);
  ASSERT_TRUE(gate2.wait_entered());
  EXPECT_EQ(used_flags(), kUsedFNoNotify);
  plain.txq.make_avail(1);  // no notify: the flag says not to
  gate2.release();
  ASSERT_TRUE(eventually([&] { return p->sent_count() == 2; }));
  ASSERT_TRUE(eventually([&] { return used_flags() == 0; }));
}

// A reset while the thread drains waits for it; afterwards nothing more is sent from the
// old rings, and the device (and its thread) can be destroyed.
TEST_F(TxThreadTest, ResetWaitsForADrainInProgress) {
  for (uint16_t d = 0; d < 4; ++d) g.txq.make_avail(d);
  g.drv->notify(1);
  ASSERT_TRUE(gate.wait_entered());
  std::thread releaser([&] {
    std::this_thread::sleep_for(20ms);
    gate.release();
  });
  g.drv->wr(VirtioMmioTransport::kStatus, 0);  // reset: returns once the drain is done
  releaser.join();
  const size_t after_reset = port->sent_count();
  EXPECT_EQ(after_reset, 4u);  // the drain in progress finished the ring
  for (uint16_t d = 4; d < 8; ++d) g.txq.make_avail(d);
  g.drv->notify(1);  // not live: ignored
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(port->sent_count(), after_reset);
}

}  // namespace
}  // namespace gears::vmm::virtio::test
