#include "virtio/virtqueue.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "virtio/spec.h"
#include "virtio_test_util.h"

namespace gears::vmm::virtio {
namespace {

using test::DriverRing;
using test::need_event;

class RecordingEvents : public QueueEvents {
 public:
  void used_buffer(uint16_t) override { ++used; }
  void config_changed() override { ++config; }
  void needs_reset() override { ++reset; }
  void malformed_chain(uint16_t) override { ++malformed; }
  int used = 0, config = 0, reset = 0, malformed = 0;
};

class VirtqueueTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kRingBase = 0x10000;
  static constexpr uint64_t kBuf = 0x100000;

  void make(uint16_t size, Virtqueue::Options opts = {}) {
    ring = DriverRing::at(mem, kRingBase, size);
    auto q = Virtqueue::create(mem, 0, ring.layout(), 256, opts, &ev);
    ASSERT_TRUE(q) << q.error().what();
    vq.emplace(std::move(*q));
  }

  GuestMemory mem = test::make_memory();
  DriverRing ring;
  RecordingEvents ev;
  std::optional<Virtqueue> vq;
};

TEST_F(VirtqueueTest, LayoutRules) {
  auto layout = [](uint16_t size, uint64_t d, uint64_t a, uint64_t u) {
    return QueueLayout{size, d, a, u};
  };
  EXPECT_TRUE(validate_layout(mem, layout(8, 0x1000, 0x2000, 0x3000), 256));
  EXPECT_FALSE(validate_layout(mem, layout(0, 0x1000, 0x2000, 0x3000), 256));
  EXPECT_FALSE(validate_layout(mem, layout(512, 0x1000, 0x2000, 0x3000), 256));
  auto np2 = validate_layout(mem, layout(12, 0x1000, 0x2000, 0x3000), 256);
  ASSERT_FALSE(np2);
  EXPECT_NE(np2.error().message.find("power of two"), std::string::npos);
  EXPECT_FALSE(validate_layout(mem, layout(8, 0x1008, 0x2000, 0x3000), 256));  // desc align 16
  EXPECT_FALSE(validate_layout(mem, layout(8, 0x1000, 0x2001, 0x3000), 256));  // avail align 2
  EXPECT_FALSE(validate_layout(mem, layout(8, 0x1000, 0x2000, 0x3002), 256));  // used align 4
  const uint64_t end = mem.size();
  EXPECT_FALSE(validate_layout(mem, layout(8, end - 64, 0x2000, 0x3000), 256));  // desc past RAM
  EXPECT_FALSE(validate_layout(mem, layout(8, 0x1000, 0xFEE0'0000, 0x3000), 256));
  EXPECT_FALSE(validate_layout(mem, layout(8, 0x1000, 0x2000, ~0ULL - 3), 256));
}

TEST_F(VirtqueueTest, PopsAChainAndPublishesTheUsedElement) {
  make(8);
  ring.set_desc(2, kBuf, 10, kDescFNext, 5);
  ring.set_desc(5, kBuf + 0x100, 20, kDescFNext | kDescFWrite, 7);
  ring.set_desc(7, kBuf + 0x200, 30, kDescFWrite);
  ring.make_avail(2);

  auto c = vq->pop();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->head, 2);
  ASSERT_EQ(c->readable.size(), 1u);
  ASSERT_EQ(c->writable.size(), 2u);
  EXPECT_EQ(c->readable_bytes(), 10u);
  EXPECT_EQ(c->writable_bytes(), 50u);
  EXPECT_EQ(c->writable[1].gpa, kBuf + 0x200);
  EXPECT_FALSE(vq->pop());

  vq->push(c->head, 42);
  EXPECT_EQ(ev.used, 0);
  vq->signal();
  EXPECT_EQ(ev.used, 1);
  auto u = ring.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 2u);
  EXPECT_EQ(u->second, 42u);
  vq->signal();  // nothing new: no second notification
  EXPECT_EQ(ev.used, 1);
}

TEST_F(VirtqueueTest, RingIndicesWrapAround) {
  make(4);
  for (int i = 0; i < 70000; ++i) {  // past 65536: the 16-bit indices wrap
    const auto head = static_cast<uint16_t>(i % 4);
    ring.set_desc(head, kBuf, 4, 0);
    ring.make_avail(head);
    auto c = vq->pop();
    ASSERT_TRUE(c);
    ASSERT_EQ(c->head, head);
    vq->push(c->head, 0);
    ASSERT_TRUE(ring.next_used());
  }
  EXPECT_EQ(ev.malformed, 0);
}

// A malformed chain is counted, returned with length 0, and the next good one still works.
void expect_dropped(DriverRing& ring, RecordingEvents& ev, Virtqueue& vq, uint16_t head) {
  ring.make_avail(head);
  EXPECT_FALSE(vq.pop());
  EXPECT_EQ(ev.malformed, 1);
  auto u = ring.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, head);
  EXPECT_EQ(u->second, 0u);
  EXPECT_FALSE(vq.broken());
}

TEST_F(VirtqueueTest, DescriptorOutsideRamIsDropped) {
  make(8);
  ring.set_desc(0, 0xFEE0'0000, 16, 0);  // MMIO hole, not RAM
  expect_dropped(ring, ev, *vq, 0);
  ring.set_desc(1, kBuf, 16, 0);
  ring.make_avail(1);
  EXPECT_TRUE(vq->pop());
}

TEST_F(VirtqueueTest, LengthOverflowIsDropped) {
  make(8);
  ring.set_desc(0, mem.size() - 16, 32, 0);  // runs off the end of RAM
  expect_dropped(ring, ev, *vq, 0);
  ring.set_desc(1, std::numeric_limits<uint64_t>::max() - 8, 0xffff'ffff, 0);  // wraps 2^64
  ring.make_avail(1);
  EXPECT_FALSE(vq->pop());
  EXPECT_EQ(ev.malformed, 2);
}

TEST_F(VirtqueueTest, LoopingChainIsDropped) {
  make(8);
  ring.set_desc(0, kBuf, 8, kDescFNext, 1);
  ring.set_desc(1, kBuf, 8, kDescFNext, 0);
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, SelfLoopIsDropped) {
  make(8);
  ring.set_desc(3, kBuf, 8, kDescFNext, 3);
  expect_dropped(ring, ev, *vq, 3);
}

TEST_F(VirtqueueTest, ChainLongerThanTheQueueIsDropped) {
  // With indirect descriptors a chain can name more descriptors than the ring has.
  make(4, {.event_idx = false, .indirect = true});
  const uint64_t table = 0x50000;
  for (uint16_t i = 0; i < 8; ++i) ring.write_desc(table, i, kBuf, 8, i < 7 ? kDescFNext : 0, i + 1);
  ring.set_desc(0, table, 8 * 16, kDescFIndirect);
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, IndirectTableAsLargeAsTheQueueIsAccepted) {
  // Linux's virtio-blk puts header + seg_max data segments + status into one table.
  make(8, {.event_idx = false, .indirect = true});
  const uint64_t table = 0x50000;
  for (uint16_t i = 0; i < 8; ++i)
    ring.write_desc(table, i, kBuf + 0x100 * i, 8, (i < 7 ? kDescFNext : 0) | (i > 0 ? kDescFWrite : 0), i + 1);
  ring.set_desc(0, table, 8 * 16, kDescFIndirect);
  ring.make_avail(0);
  auto c = vq->pop();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->readable.size(), 1u);
  EXPECT_EQ(c->writable.size(), 7u);
}

TEST_F(VirtqueueTest, LoopInsideIndirectTableIsDropped) {
  make(8, {.event_idx = false, .indirect = true});
  const uint64_t table = 0x50000;
  ring.write_desc(table, 0, kBuf, 8, kDescFNext, 1);
  ring.write_desc(table, 1, kBuf, 8, kDescFNext, 0);
  ring.set_desc(0, table, 2 * 16, kDescFIndirect);
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, NextIndexOutOfRangeIsDropped) {
  make(8);
  ring.set_desc(0, kBuf, 8, kDescFNext, 8);
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, ReadableAfterWritableIsDropped) {
  make(8);
  ring.set_desc(0, kBuf, 8, kDescFWrite | kDescFNext, 1);
  ring.set_desc(1, kBuf, 8, 0);
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, HeadOutOfRangeBreaksTheQueue) {
  make(8);
  ring.make_avail(9);
  EXPECT_FALSE(vq->pop());
  EXPECT_TRUE(vq->broken());
  EXPECT_EQ(ev.reset, 1);
  EXPECT_EQ(ring.used_idx(), 0);  // nothing bogus handed back
  ring.set_desc(0, kBuf, 8, 0);
  ring.make_avail(0);
  EXPECT_FALSE(vq->pop());  // a broken queue stays quiet until reset
}

TEST_F(VirtqueueTest, AvailIndexJumpBreaksTheQueue) {
  make(8);
  ASSERT_TRUE(mem.write_obj<uint16_t>(ring.avail + 2, 100));
  EXPECT_FALSE(vq->pop());
  EXPECT_TRUE(vq->broken());
  EXPECT_EQ(ev.reset, 1);
}

TEST_F(VirtqueueTest, IndirectTable) {
  make(8, {.event_idx = false, .indirect = true});
  const uint64_t table = 0x50000;
  ring.write_desc(table, 0, kBuf, 16, kDescFNext, 1);
  ring.write_desc(table, 1, kBuf + 0x1000, 512, kDescFNext | kDescFWrite, 2);
  ring.write_desc(table, 2, kBuf + 0x2000, 1, kDescFWrite);
  ring.set_desc(4, table, 3 * 16, kDescFIndirect);
  ring.make_avail(4);
  auto c = vq->pop();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->head, 4);
  EXPECT_EQ(c->readable_bytes(), 16u);
  EXPECT_EQ(c->writable_bytes(), 513u);
}

TEST_F(VirtqueueTest, IndirectRefusedUnlessNegotiatedOrWellFormed) {
  const uint64_t table = 0x50000;
  make(8);  // not negotiated
  ring.write_desc(table, 0, kBuf, 16, 0);
  ring.set_desc(0, table, 16, kDescFIndirect);
  expect_dropped(ring, ev, *vq, 0);

  ev = {};
  make(8, {.event_idx = false, .indirect = true});
  ring.write_desc(table, 0, table, 16, kDescFIndirect);  // nested
  ring.set_desc(0, table, 16, kDescFIndirect);
  expect_dropped(ring, ev, *vq, 0);

  ev = {};
  make(8, {.event_idx = false, .indirect = true});
  ring.set_desc(0, table, 20, kDescFIndirect);  // not a multiple of 16
  expect_dropped(ring, ev, *vq, 0);

  ev = {};
  make(8, {.event_idx = false, .indirect = true});
  ring.set_desc(0, mem.size() - 16, 32, kDescFIndirect);  // table outside RAM
  expect_dropped(ring, ev, *vq, 0);
}

TEST_F(VirtqueueTest, NoInterruptFlagSuppressesSignal) {
  make(8);
  ring.set_avail_flags(kAvailFNoInterrupt);
  ring.set_desc(0, kBuf, 8, 0);
  ring.make_avail(0);
  auto c = vq->pop();
  ASSERT_TRUE(c);
  vq->push(c->head, 0);
  vq->signal();
  EXPECT_EQ(ev.used, 0);
  EXPECT_TRUE(ring.next_used());
}

TEST_F(VirtqueueTest, EventIdx) {
  make(8, {.event_idx = true, .indirect = false});
  for (uint16_t i = 0; i < 3; ++i) {
    ring.set_desc(i, kBuf, 8, 0);
    ring.make_avail(i);
  }
  // The driver wants an interrupt only once the used index passes 2 (used_event = 2).
  ring.set_used_event(2);
  for (int i = 0; i < 2; ++i) {
    auto c = vq->pop();
    ASSERT_TRUE(c);
    vq->push(c->head, 0);
    vq->signal();
  }
  EXPECT_EQ(ev.used, 0);  // used idx went 0->1->2: entry 2 not yet used
  auto c = vq->pop();
  ASSERT_TRUE(c);
  vq->push(c->head, 0);
  vq->signal();
  EXPECT_EQ(ev.used, 1);
  EXPECT_FALSE(vq->pop());
  EXPECT_EQ(ring.avail_event(), 3);  // "notify me when you add entry 3"
}

// Driver -> device: with EVENT_IDX the device publishes avail_event = the next entry it will
// look at; a driver that adds entries while the device is still behind does not notify.
TEST_F(VirtqueueTest, EventIdxSuppressesNotificationsWhileTheDeviceIsBehind) {
  make(8, {.event_idx = true, .indirect = false});
  for (uint16_t i = 0; i < 8; ++i) ring.set_desc(i, kBuf, 8, 0);
  EXPECT_TRUE(ring.make_avail_batch({0, 1, 2}));  // nothing consumed yet: notify
  auto c = vq->pop();
  ASSERT_TRUE(c);
  vq->push(c->head, 0);
  EXPECT_FALSE(ring.make_avail_batch({3}));  // the device has 1, 2 still to do: no exit
  EXPECT_FALSE(ring.make_avail_batch({4, 5}));
  int n = 0;
  while (auto d = vq->pop()) {  // the device drains everything, then re-arms
    vq->push(d->head, 0);
    ++n;
  }
  EXPECT_EQ(n, 5);
  EXPECT_EQ(ring.avail_event(), 6);
  EXPECT_TRUE(ring.make_avail_batch({6}));  // the device went idle: notify
}

// Both directions over many wrap-arounds of the 16-bit indices, with a device that runs only
// when notified (and then until the ring is empty) and a driver that sleeps until interrupted
// (re-arming used_event as Linux's virtqueue_enable_cb does, then checking once more). Nothing
// may be left waiting with nobody to wake for it, and the notifications must be suppressed
// while the other side is busy.
TEST_F(VirtqueueTest, EventIdxNeverLosesAWakeupAcrossWraps) {
  make(8, {.event_idx = true, .indirect = false});
  for (uint16_t i = 0; i < 8; ++i) ring.set_desc(i, kBuf, 8, 0);
  std::mt19937 rng(5);
  bool device_running = false;
  bool driver_sleeping = false;  // waiting for an interrupt, used_event armed
  uint16_t consumed = 0;
  int kicks = 0, adds = 0, irqs = 0, pushes = 0;
  // NAPI: an interrupt switches the driver to polling (callbacks off: used_event left stale);
  // when a poll finds nothing it re-arms used_event = last_used and checks once more.
  auto driver_reap = [&] { ring.last_used = ring.used_idx(); };
  for (int step = 0; step < 600000; ++step) {
    switch (rng() % 3) {
      case 0: {  // the driver adds a batch if it has room
        const uint16_t room = static_cast<uint16_t>(8 - static_cast<uint16_t>(ring.avail_idx - consumed));
        if (room == 0) break;
        const uint16_t k = static_cast<uint16_t>(1 + rng() % room);
        const uint16_t old = ring.avail_idx;
        for (uint16_t j = 0; j < k; ++j) ring.make_avail(static_cast<uint16_t>(ring.avail_idx % 8));
        adds += k;
        if (need_event(ring.avail_event(), ring.avail_idx, old)) {
          ++kicks;
          device_running = true;
        }
        break;
      }
      case 1:  // the device does one chain, or finds the ring empty and stops
        if (!device_running) break;
        if (auto c = vq->pop()) {
          vq->push(c->head, 0);
          ++consumed;
          ++pushes;
          const int before = ev.used;
          vq->signal();
          if (ev.used != before) {
            ++irqs;
            driver_sleeping = false;
          }
        } else {
          device_running = false;
        }
        break;
      default:  // the driver polls (NAPI); with nothing left it re-arms and sleeps
        if (driver_sleeping) break;
        if (ring.used_idx() != ring.last_used) {
          driver_reap();
          break;
        }
        ring.set_used_event(ring.last_used);
        driver_sleeping = ring.used_idx() == ring.last_used;
        break;
    }
    // Invariants: pending chains imply a running device; a sleeping driver has nothing unseen.
    ASSERT_TRUE(device_running || ring.avail_idx == consumed) << "lost notification at step " << step;
    ASSERT_FALSE(driver_sleeping && ring.used_idx() != ring.last_used) << "lost interrupt at step " << step;
  }
  // Let the device finish; the driver must end up with every used entry.
  while (device_running) {
    if (auto c = vq->pop()) {
      vq->push(c->head, 0);
      ++consumed;
      vq->signal();
    } else {
      device_running = false;
    }
  }
  EXPECT_EQ(consumed, ring.avail_idx);
  EXPECT_GT(adds, 65536 * 2);  // the indices wrapped
  EXPECT_LT(kicks, adds);      // suppressed while the device was busy
  EXPECT_LT(irqs, pushes);     // suppressed while the driver was polling
  EXPECT_GT(irqs, 0);
}

// A deterministic fuzz: rings full of hostile but plausible garbage. Whatever the driver
// writes, every segment handed to a device lies in RAM, pop() terminates, and the queue either
// keeps going or breaks cleanly.
TEST(VirtqueueFuzz, RandomRingsNeverEscapeRam) {
  GuestMemory mem = test::make_memory(2 << 20);
  std::mt19937_64 rng(12345);
  auto pick_addr = [&]() -> uint64_t {
    switch (rng() % 6) {
      case 0: return rng();                                 // anywhere
      case 1: return mem.size() - (rng() % 64);             // at the end of RAM
      case 2: return 0xFFFF'FFFF'FFFF'FFFFULL - (rng() % 64);  // about to wrap
      case 3: return 0x40000 + (rng() % 0x1000) * 16;       // an indirect table area
      default: return rng() % mem.size();                   // inside RAM
    }
  };
  int chains = 0;
  for (int round = 0; round < 2000; ++round) {
    const uint16_t size = static_cast<uint16_t>(1u << (rng() % 6));
    DriverRing ring = DriverRing::at(mem, 0x10000, size);
    QueueEvents* none = nullptr;
    auto q = Virtqueue::create(mem, 0, ring.layout(), 64,
                               {.event_idx = (rng() & 1) != 0, .indirect = (rng() & 1) != 0}, none);
    ASSERT_TRUE(q);
    // Indirect tables at 0x40000 hold garbage too.
    for (int i = 0; i < 64; ++i)
      ring.write_desc(0x40000, static_cast<uint16_t>(rng() % 0x1000), pick_addr(),
                      static_cast<uint32_t>(rng() % 3 == 0 ? rng() : rng() % 4096),
                      static_cast<uint16_t>(rng() % 8), static_cast<uint16_t>(rng() % (size + 2)));
    for (uint16_t i = 0; i < size; ++i)
      ring.set_desc(i, pick_addr(), static_cast<uint32_t>(rng() % 3 == 0 ? rng() : rng() % 4096),
                    static_cast<uint16_t>(rng() % 8), static_cast<uint16_t>(rng() % (size + 1)));
    const int avail = static_cast<int>(rng() % (size + 2));
    for (int i = 0; i < avail; ++i) ring.make_avail(static_cast<uint16_t>(rng() % (size + 1)));
    for (int guard = 0; guard <= size + 2; ++guard) {
      auto c = q->pop();
      if (!c) break;
      ++chains;
      ASSERT_LT(c->head, size);
      for (const auto& s : c->readable) ASSERT_TRUE(mem.contains(s.gpa, s.len));
      for (const auto& s : c->writable) ASSERT_TRUE(mem.contains(s.gpa, s.len));
      ASSERT_LE(c->readable.size() + c->writable.size(), 2 * size_t{size});  // ring + one table
      q->push(c->head, 0);
    }
    EXPECT_FALSE(q->pop());  // drained (or broken): nothing more to hand out
  }
  EXPECT_GT(chains, 0);  // the generator does produce valid chains
}

TEST(Segments, ByteStreamAcrossSegments) {
  GuestMemory mem = test::make_memory();
  std::vector<Segment> segs = {{0x1000, 3}, {0x2000, 5}, {0x3000, 4}};
  const std::string msg = "hello, world";
  EXPECT_EQ(copy_to_segments(mem, segs, 0, std::span(reinterpret_cast<const uint8_t*>(msg.data()), msg.size())), 12u);
  std::array<uint8_t, 6> out{};
  EXPECT_EQ(copy_from_segments(mem, segs, 2, out), 6u);
  EXPECT_EQ(std::string(out.begin(), out.end()), "llo, w");
  EXPECT_EQ(copy_from_segments(mem, segs, 10, out), 2u);  // only two bytes left

  auto iov = segments_iov(mem, segs, 4, 6);
  ASSERT_TRUE(iov);
  ASSERT_EQ(iov->size(), 2u);
  EXPECT_EQ((*iov)[0].iov_len, 4u);
  EXPECT_EQ((*iov)[1].iov_len, 2u);
  EXPECT_EQ(std::memcmp((*iov)[0].iov_base, "o, w", 4), 0);
  EXPECT_FALSE(segments_iov(mem, segs, 4, 9));  // past the end
}

}  // namespace
}  // namespace gears::vmm::virtio
