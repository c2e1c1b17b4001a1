// Test helpers for the virtio layer: a recording IrqLine, the driver's side of a split ring
// built inside a GuestMemory, and a register-level driver for VirtioMmioTransport that follows
// the same steps as Linux's virtio_mmio (reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK,
// queue setup, DRIVER_OK).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <mutex>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "core/guest_memory.h"
#include "core/io_bus.h"
#include "virtio/mmio_transport.h"
#include "virtio/spec.h"
#include "virtio/virtqueue.h"

namespace gears::vmm::virtio::test {

class FakeIrq : public IrqLine {
 public:
  void set_level(bool high) override {
    std::lock_guard lk(mu_);
    levels_.push_back(high);
    level_ = high;
    cv_.notify_all();
  }
  bool level() {
    std::lock_guard lk(mu_);
    return level_;
  }
  std::vector<bool> levels() {
    std::lock_guard lk(mu_);
    return levels_;
  }
  // Waits for the line to reach `high` (for device threads). The bound only keeps a broken
  // test from hanging the suite; the assertion is on the level, not on the time.
  bool wait_for(bool high) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(30), [&] { return level_ == high; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> levels_;
  bool level_ = false;
};

// vring_need_event() (spec 2.7.10 / Linux's virtio_ring.h): an event index `event` asks for a
// notification when an index moves from `old` to `new_idx` past it.
inline bool need_event(uint16_t event, uint16_t new_idx, uint16_t old) {
  return static_cast<uint16_t>(new_idx - event - 1) < static_cast<uint16_t>(new_idx - old);
}

// The driver's view of one split ring in guest memory.
struct DriverRing {
  GuestMemory* mem = nullptr;
  uint16_t size = 0;
  uint64_t desc = 0, avail = 0, used = 0;
  uint16_t avail_idx = 0;
  uint16_t last_used = 0;

  // Lays the rings out at `base`: descriptors, then avail at +0x1000, used at +0x2000.
  static DriverRing at(GuestMemory& mem, uint64_t base, uint16_t size) {
    DriverRing r;
    r.mem = &mem;
    r.size = size;
    r.desc = base;
    r.avail = base + 0x1000;
    r.used = base + 0x2000;
    EXPECT_TRUE(mem.fill(base, 0, 0x3000));
    return r;
  }
  QueueLayout layout() const { return {size, desc, avail, used}; }

  void set_desc(uint16_t i, uint64_t addr, uint32_t len, uint16_t flags, uint16_t next = 0) {
    write_desc(desc, i, addr, len, flags, next);
  }
  void write_desc(uint64_t table, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
                  uint16_t next = 0) {
    uint8_t d[16];
    std::memcpy(d, &addr, 8);
    std::memcpy(d + 8, &len, 4);
    std::memcpy(d + 12, &flags, 2);
    std::memcpy(d + 14, &next, 2);
    EXPECT_TRUE(mem->write(table + 16ULL * i, d));
  }
  // Ring indices shared with a device thread are accessed atomically, as a driver's barriers
  // would order them.
  uint16_t* idx16(uint64_t gpa) const {
    return reinterpret_cast<uint16_t*>(mem->span(gpa, 2).value().data());
  }
  // Makes `head` available (ring entry, then index, as a driver does).
  void make_avail(uint16_t head) {
    __atomic_store_n(idx16(avail + 4 + 2ULL * (avail_idx % size)), head, __ATOMIC_RELAXED);
    ++avail_idx;
    __atomic_store_n(idx16(avail + 2), avail_idx, __ATOMIC_SEQ_CST);
  }
  // Makes `heads` available and says whether the driver must notify (EVENT_IDX: avail_event
  // crossed, as Linux's virtqueue_kick_prepare after a batch).
  bool make_avail_batch(std::initializer_list<uint16_t> heads) {
    const uint16_t old = avail_idx;
    for (uint16_t h : heads) make_avail(h);
    return need_event(avail_event(), avail_idx, old);
  }
  void set_avail_flags(uint16_t f) { __atomic_store_n(idx16(avail), f, __ATOMIC_SEQ_CST); }
  void set_used_event(uint16_t v) { __atomic_store_n(idx16(avail + 4 + 2ULL * size), v, __ATOMIC_SEQ_CST); }
  uint16_t avail_event() const { return __atomic_load_n(idx16(used + 4 + 8ULL * size), __ATOMIC_SEQ_CST); }
  uint16_t used_idx() const { return __atomic_load_n(idx16(used + 2), __ATOMIC_SEQ_CST); }
  // The next used element {id, len}, if the device published one.
  std::optional<std::pair<uint32_t, uint32_t>> next_used() {
    if (used_idx() == last_used) return std::nullopt;
    const uint64_t e = used + 4 + 8ULL * (last_used % size);
    ++last_used;
    // As Linux's virtqueue_get_buf does with EVENT_IDX: interrupt me for the next one.
    set_used_event(last_used);
    return std::pair{*mem->read_obj<uint32_t>(e), *mem->read_obj<uint32_t>(e + 4)};
  }
};

// Register-level driver for one VirtioMmioTransport.
class MmioDriver {
 public:
  using T = VirtioMmioTransport;
  MmioDriver(T& t, GuestMemory& mem) : t_(t), mem_(mem) {}

  uint32_t rd(uint32_t off) {
    uint32_t v = 0;
    t_.read(off, std::span(reinterpret_cast<uint8_t*>(&v), 4));
    return v;
  }
  void wr(uint32_t off, uint32_t v) { t_.write(off, std::span(reinterpret_cast<const uint8_t*>(&v), 4)); }

  uint64_t device_features() {
    wr(T::kDeviceFeaturesSel, 1);
    uint64_t f = uint64_t{rd(T::kDeviceFeatures)} << 32;
    wr(T::kDeviceFeaturesSel, 0);
    return f | rd(T::kDeviceFeatures);
  }
  // Reset, ACKNOWLEDGE, DRIVER, accept `accept & offered`, FEATURES_OK; true if accepted.
  bool negotiate(uint64_t accept) {
    wr(T::kStatus, 0);
    wr(T::kStatus, kStatusAcknowledge);
    wr(T::kStatus, kStatusAcknowledge | kStatusDriver);
    const uint64_t f = device_features() & accept;
    return write_features(f);
  }
  bool write_features(uint64_t f) {
    wr(T::kDriverFeaturesSel, 1);
    wr(T::kDriverFeatures, static_cast<uint32_t>(f >> 32));
    wr(T::kDriverFeaturesSel, 0);
    wr(T::kDriverFeatures, static_cast<uint32_t>(f));
    wr(T::kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk);
    return (rd(T::kStatus) & kStatusFeaturesOk) != 0;
  }
  // Programs queue `q` with `ring`'s layout (`num` overrides the size written) and sets Ready.
  void setup_queue(uint16_t q, const DriverRing& ring, std::optional<uint32_t> num = {}) {
    wr(T::kQueueSel, q);
    EXPECT_EQ(rd(T::kQueueReady), 0u);
    EXPECT_GE(rd(T::kQueueNumMax), ring.size);
    wr(T::kQueueNum, num.value_or(ring.size));
    wr(T::kQueueDescLow, static_cast<uint32_t>(ring.desc));
    wr(T::kQueueDescHigh, static_cast<uint32_t>(ring.desc >> 32));
    wr(T::kQueueDriverLow, static_cast<uint32_t>(ring.avail));
    wr(T::kQueueDriverHigh, static_cast<uint32_t>(ring.avail >> 32));
    wr(T::kQueueDeviceLow, static_cast<uint32_t>(ring.used));
    wr(T::kQueueDeviceHigh, static_cast<uint32_t>(ring.used >> 32));
    wr(T::kQueueReady, 1);
  }
  void driver_ok() {
    wr(T::kStatus, rd(T::kStatus) | kStatusDriverOk);
  }
  void notify(uint32_t q) { wr(T::kQueueNotify, q); }
  // What Linux's vm_interrupt does: read InterruptStatus, ACK all of it.
  uint32_t take_interrupt() {
    const uint32_t isr = rd(T::kInterruptStatus);
    wr(T::kInterruptAck, isr);
    return isr;
  }

 private:
  T& t_;
  GuestMemory& mem_;
};

inline GuestMemory make_memory(uint64_t size = 4 << 20) {
  auto m = GuestMemory::create(size);
  EXPECT_TRUE(m) << m.error().what();
  return std::move(*m);
}

}  // namespace gears::vmm::virtio::test
