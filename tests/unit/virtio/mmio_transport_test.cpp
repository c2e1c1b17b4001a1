#include "virtio/mmio_transport.h"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <cstring>
#include <memory>

#include "virtio/spec.h"
#include "virtio_test_util.h"

namespace gears::vmm::virtio {
namespace {

using test::DriverRing;
using test::FakeIrq;
using test::MmioDriver;
using T = VirtioMmioTransport;

// A device that completes every chain with written = readable bytes, and records calls.
struct FakeState {
  std::atomic<int> activations{0}, notifies{0}, resets{0};
  uint64_t features = 0;
};

class FakeDevice final : public VirtioDevice {
 public:
  explicit FakeDevice(FakeState* s) : s_(s) {}
  std::string_view name() const override { return "fake"; }
  uint32_t device_id() const override { return 42; }
  uint64_t features() const override { return feature_bit(0) | feature_bit(5); }
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t) const override { return 16; }
  uint32_t config_size() const override { return 8; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override {
    const std::array<uint8_t, 8> cfg = {1, 2, 3, 4, 5, 6, 7, 8};
    std::memcpy(data.data(), cfg.data() + offset, data.size());
  }
  Expected<void> activate(const Activation& act) override {
    ++s_->activations;
    s_->features = act.features;
    queues_ = act.queues;
    return {};
  }
  void queue_notify(uint16_t q) override {
    ++s_->notifies;
    Virtqueue* vq = queues_.at(q);
    if (!vq) return;
    while (auto c = vq->pop()) vq->push(c->head, static_cast<uint32_t>(c->readable_bytes()));
    vq->signal();
  }
  void reset() override {
    ++s_->resets;
    queues_.clear();
  }

 private:
  FakeState* s_;
  std::vector<Virtqueue*> queues_;
};

class MmioTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBuf = 0x100000;

  GuestMemory mem = test::make_memory();
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  FakeState state;
  T transport{mem, irq, std::make_unique<FakeDevice>(&state)};
  MmioDriver drv{transport, mem};
  DriverRing ring0 = DriverRing::at(mem, 0x10000, 8);
  DriverRing ring1 = DriverRing::at(mem, 0x20000, 16);

  void bring_up() {
    ASSERT_TRUE(drv.negotiate(~0ULL));
    drv.setup_queue(0, ring0);
    drv.setup_queue(1, ring1);
    drv.driver_ok();
    ASSERT_EQ(state.activations, 1);
  }
};

TEST_F(MmioTest, IdentityRegisters) {
  EXPECT_EQ(drv.rd(T::kMagicValue), 0x74726976u);
  EXPECT_EQ(drv.rd(T::kVersion), 2u);
  EXPECT_EQ(drv.rd(T::kDeviceId), 42u);
  EXPECT_NE(drv.rd(T::kVendor), 0u);
  EXPECT_EQ(drv.rd(T::kShmLenLow), 0xffffffffu);  // no shared memory regions
}

TEST_F(MmioTest, NarrowRegisterAccessReadsZero) {
  uint16_t v = 0xffff;
  transport.read(T::kMagicValue, std::span(reinterpret_cast<uint8_t*>(&v), 2));
  EXPECT_EQ(v, 0);
}

TEST_F(MmioTest, ConfigSpaceAnyWidthAndBounded) {
  uint8_t b = 0;
  transport.read(T::kConfig + 2, std::span(&b, 1));
  EXPECT_EQ(b, 3);
  uint32_t w = 0;
  transport.read(T::kConfig + 4, std::span(reinterpret_cast<uint8_t*>(&w), 4));
  EXPECT_EQ(w, 0x08070605u);
  w = 0xdeadbeef;
  transport.read(T::kConfig + 6, std::span(reinterpret_cast<uint8_t*>(&w), 4));  // straddles end
  EXPECT_EQ(w, 0u);
  transport.read(T::kConfig + 0xf0, std::span(reinterpret_cast<uint8_t*>(&w), 4));
  EXPECT_EQ(w, 0u);
}

TEST_F(MmioTest, OffersVersion1AndRingFeatures) {
  const uint64_t f = drv.device_features();
  EXPECT_TRUE(f & feature_bit(kFVersion1));
  EXPECT_TRUE(f & feature_bit(kFIndirectDesc));
  EXPECT_TRUE(f & feature_bit(kFEventIdx));
  EXPECT_TRUE(f & feature_bit(0));
  EXPECT_TRUE(f & feature_bit(5));
}

TEST_F(MmioTest, FeaturesOkRefusedWithoutVersion1OrWithUnknownBits) {
  EXPECT_FALSE(drv.negotiate(feature_bit(0)));  // legacy driver: no VERSION_1
  EXPECT_FALSE(drv.negotiate(0));
  drv.wr(T::kStatus, 0);
  drv.wr(T::kStatus, kStatusAcknowledge | kStatusDriver);
  EXPECT_FALSE(drv.write_features(feature_bit(kFVersion1) | feature_bit(7)));  // not offered
  EXPECT_TRUE(drv.negotiate(feature_bit(kFVersion1) | feature_bit(0)));
}

TEST_F(MmioTest, NegotiatedFeaturesReachTheDevice) {
  ASSERT_TRUE(drv.negotiate(feature_bit(kFVersion1) | feature_bit(5)));
  drv.setup_queue(0, ring0);
  drv.setup_queue(1, ring1);
  drv.driver_ok();
  EXPECT_EQ(state.features, feature_bit(kFVersion1) | feature_bit(5));
  EXPECT_TRUE(drv.rd(T::kStatus) & kStatusDriverOk);
}

TEST_F(MmioTest, QueueNumMaxAndAbsentQueues) {
  drv.wr(T::kQueueSel, 1);
  EXPECT_EQ(drv.rd(T::kQueueNumMax), 16u);
  drv.wr(T::kQueueSel, 2);
  EXPECT_EQ(drv.rd(T::kQueueNumMax), 0u);  // Linux: "queue not available"
}

TEST_F(MmioTest, RequestInterruptAckCycle) {
  bring_up();
  ring1.set_desc(0, kBuf, 100, 0);
  ring1.make_avail(0);
  EXPECT_FALSE(irq->level());
  drv.notify(1);
  auto u = ring1.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  EXPECT_EQ(u->second, 100u);
  EXPECT_TRUE(irq->level());
  EXPECT_EQ(drv.rd(T::kInterruptStatus), kIsrUsedBuffer);
  EXPECT_EQ(drv.take_interrupt(), kIsrUsedBuffer);
  EXPECT_FALSE(irq->level());
  EXPECT_EQ(drv.rd(T::kInterruptStatus), 0u);
  EXPECT_EQ(irq->levels(), (std::vector<bool>{true, false}));
}

TEST_F(MmioTest, LevelStaysHighUntilEveryBitIsAcked) {
  bring_up();
  ring1.set_desc(0, kBuf, 1, 0);
  ring1.make_avail(0);
  drv.notify(1);
  ring1.set_desc(1, kBuf, 1, 0);
  ring1.make_avail(1);
  drv.notify(1);
  EXPECT_EQ(irq->levels(), (std::vector<bool>{true}));  // no second edge while high
  drv.wr(T::kInterruptAck, kIsrConfigChange);          // not the pending bit
  EXPECT_TRUE(irq->level());
  drv.wr(T::kInterruptAck, kIsrUsedBuffer);
  EXPECT_FALSE(irq->level());
}

TEST_F(MmioTest, NotifyBeforeDriverOkIsDeferred) {
  ASSERT_TRUE(drv.negotiate(~0ULL));
  drv.setup_queue(0, ring0);
  drv.setup_queue(1, ring1);
  ring1.set_desc(3, kBuf, 7, 0);
  ring1.make_avail(3);
  drv.notify(1);
  EXPECT_EQ(state.notifies, 0);
  EXPECT_EQ(ring1.used_idx(), 0);
  EXPECT_FALSE(irq->level());
  drv.driver_ok();  // the device now picks up what was queued
  auto u = ring1.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 3u);
  EXPECT_TRUE(irq->level());
}

TEST_F(MmioTest, NotifyOfUnknownQueueIsIgnored) {
  bring_up();
  const int before = state.notifies;
  drv.notify(7);
  drv.notify(0xffff'ffff);
  EXPECT_EQ(state.notifies, before);
}

TEST_F(MmioTest, QueueSizeNotPowerOfTwoIsRefused) {
  ASSERT_TRUE(drv.negotiate(~0ULL));
  drv.setup_queue(0, ring0, 6);
  EXPECT_EQ(drv.rd(T::kQueueReady), 0u);
  EXPECT_TRUE(drv.rd(T::kStatus) & kStatusNeedsReset);
  EXPECT_TRUE(irq->level());  // NEEDS_RESET comes with a config-change interrupt
  EXPECT_EQ(drv.take_interrupt(), kIsrConfigChange);
  EXPECT_FALSE(irq->level());
}

TEST_F(MmioTest, QueueOutsideRamIsRefused) {
  ASSERT_TRUE(drv.negotiate(~0ULL));
  DriverRing bad = ring0;
  bad.used = 0xFEC0'0000;  // IOAPIC, not RAM
  drv.setup_queue(0, bad);
  EXPECT_EQ(drv.rd(T::kQueueReady), 0u);
  EXPECT_TRUE(drv.rd(T::kStatus) & kStatusNeedsReset);
}

TEST_F(MmioTest, MalformedChainIsCountedAndReturned) {
  bring_up();
  ring1.set_desc(0, 0x7fff'ffff'0000ULL, 16, 0);  // outside RAM
  ring1.make_avail(0);
  drv.notify(1);
  EXPECT_EQ(transport.malformed_chains(), 1u);
  auto u = ring1.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 0u);
  EXPECT_FALSE(drv.rd(T::kStatus) & kStatusNeedsReset);
}

TEST_F(MmioTest, CorruptAvailRingSetsNeedsReset) {
  bring_up();
  ring1.make_avail(200);  // head index beyond the queue
  drv.notify(1);
  EXPECT_TRUE(drv.rd(T::kStatus) & kStatusNeedsReset);
  EXPECT_TRUE(drv.rd(T::kInterruptStatus) & kIsrConfigChange);
}

TEST_F(MmioTest, ResetClearsEverything) {
  bring_up();
  ring1.set_desc(0, kBuf, 1, 0);
  ring1.make_avail(0);
  drv.notify(1);
  ASSERT_TRUE(irq->level());
  const int resets = state.resets;
  drv.wr(T::kStatus, 0);
  EXPECT_EQ(state.resets, resets + 1);
  EXPECT_EQ(drv.rd(T::kStatus), 0u);
  EXPECT_EQ(drv.rd(T::kInterruptStatus), 0u);
  EXPECT_FALSE(irq->level());
  drv.wr(T::kQueueSel, 1);
  EXPECT_EQ(drv.rd(T::kQueueReady), 0u);
  const int before = state.notifies;
  drv.notify(1);  // no DRIVER_OK any more
  EXPECT_EQ(state.notifies, before);

  // The device comes back up with fresh rings.
  ring0 = DriverRing::at(mem, 0x10000, 8);
  ring1 = DriverRing::at(mem, 0x20000, 16);
  ASSERT_TRUE(drv.negotiate(~0ULL));
  drv.setup_queue(0, ring0);
  drv.setup_queue(1, ring1);
  drv.driver_ok();
  EXPECT_EQ(state.activations, 2);
  ring1.set_desc(0, kBuf, 5, 0);
  ring1.make_avail(0);
  drv.notify(1);
  ASSERT_TRUE(ring1.next_used());
}

TEST_F(MmioTest, QueueRegistersFrozenWhileReady) {
  bring_up();
  drv.wr(T::kQueueSel, 1);
  drv.wr(T::kQueueDescLow, 0x12340);  // ignored: the queue is live
  ring1.set_desc(0, kBuf, 9, 0);
  ring1.make_avail(0);
  drv.notify(1);
  auto u = ring1.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 9u);
}

TEST_F(MmioTest, DriverOkWithoutFeaturesOkIsRefused) {
  drv.wr(T::kStatus, kStatusAcknowledge | kStatusDriver);
  drv.setup_queue(0, ring0);
  drv.wr(T::kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk);
  EXPECT_FALSE(drv.rd(T::kStatus) & kStatusDriverOk);
  EXPECT_EQ(state.activations, 0);
}

}  // namespace
}  // namespace gears::vmm::virtio
