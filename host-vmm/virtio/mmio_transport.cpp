#include "virtio/mmio_transport.h"

#include <algorithm>
#include <cstring>

#include "virtio/spec.h"

namespace gears::vmm::virtio {

VirtioMmioTransport::VirtioMmioTransport(GuestMemory& mem, std::shared_ptr<IrqLine> irq,
                                         std::unique_ptr<VirtioDevice> dev)
    : mem_(mem), irq_(std::move(irq)), dev_(std::move(dev)) {
  queues_.resize(dev_->num_queues());
}

VirtioMmioTransport::~VirtioMmioTransport() {
  // Stop the device (and any thread it runs) before the queues it points into go away.
  std::lock_guard lk(mu_);
  dev_->reset();
  dev_.reset();
}

std::string_view VirtioMmioTransport::name() const { return "virtio-mmio"; }

uint64_t VirtioMmioTransport::offered_features() const {
  return dev_->features() | feature_bit(kFVersion1) | feature_bit(kFIndirectDesc) |
         feature_bit(kFEventIdx);
}

void VirtioMmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0});
  if (offset >= kConfig) {
    // Config space takes any width (Linux reads fields with readb/readw/readl).
    const uint64_t off = offset - kConfig;
    const uint32_t size = dev_->config_size();
    if (off <= size && data.size() <= size - off) dev_->read_config(static_cast<uint32_t>(off), data);
    return;
  }
  // Registers are 32-bit; the spec forbids other widths, so they read as zero.
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t v;
  {
    std::lock_guard lk(mu_);
    v = read_reg(static_cast<uint32_t>(offset));
  }
  std::memcpy(data.data(), &v, sizeof v);
}

void VirtioMmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfig) {
    const uint64_t off = offset - kConfig;
    const uint32_t size = dev_->config_size();
    if (off <= size && data.size() <= size - off) dev_->write_config(static_cast<uint32_t>(off), data);
    return;
  }
  if (data.size() != 4 || offset % 4 != 0) return;
  uint32_t v;
  std::memcpy(&v, data.data(), sizeof v);
  if (offset == kQueueNotify) {
    // Not under mu_: the device may take its time (and signal interrupts, which never take
    // mu_). A concurrent reset is safe: reset() detaches the device from its queues, under
    // the device's lock, before the queues are destroyed.
    bool live;
    {
      std::lock_guard lk(mu_);
      live = (status_ & kStatusDriverOk) && v < queues_.size() && queues_[v].vq != nullptr;
    }
    if (live) dev_->queue_notify(static_cast<uint16_t>(v));
    return;
  }
  std::lock_guard lk(mu_);
  write_reg(static_cast<uint32_t>(offset), v);
}

uint32_t VirtioMmioTransport::read_reg(uint32_t offset) {
  const bool q_ok = queue_sel_ < queues_.size();
  switch (offset) {
    case kMagicValue: return kMagic;
    case kVersion: return 2;
    case kDeviceId: return dev_->device_id();
    case kVendor: return kVendorId;
    case kDeviceFeatures: {
      const uint64_t f = offered_features();
      if (device_features_sel_ == 0) return static_cast<uint32_t>(f);
      if (device_features_sel_ == 1) return static_cast<uint32_t>(f >> 32);
      return 0;
    }
    case kQueueNumMax: return q_ok ? dev_->queue_max_size(static_cast<uint16_t>(queue_sel_)) : 0;
    case kQueueReady: return q_ok && queues_[queue_sel_].ready ? 1 : 0;
    case kInterruptStatus: {
      std::lock_guard lk(irq_mu_);
      return isr_;
    }
    case kStatus: {
      std::lock_guard lk(irq_mu_);
      return status_ | (needs_reset_ ? kStatusNeedsReset : 0);
    }
    case kConfigGeneration: {
      std::lock_guard lk(irq_mu_);
      return config_generation_;
    }
    // No shared-memory regions: a length of all-ones means "absent" to Linux.
    case kShmLenLow:
    case kShmLenHigh:
    case kShmBaseLow:
    case kShmBaseHigh: return 0xffff'ffff;
    default: return 0;
  }
}

void VirtioMmioTransport::write_reg(uint32_t offset, uint32_t v) {
  QueueRegs* q = queue_sel_ < queues_.size() ? &queues_[queue_sel_] : nullptr;
  // Queue registers only change while the queue is not live (spec 4.2.3.2).
  QueueRegs* qw = q && !q->ready ? q : nullptr;
  auto set_low = [](uint64_t& r, uint32_t x) { r = (r & ~0xffff'ffffULL) | x; };
  auto set_high = [](uint64_t& r, uint32_t x) { r = (r & 0xffff'ffffULL) | (uint64_t{x} << 32); };
  switch (offset) {
    case kDeviceFeaturesSel: device_features_sel_ = v; break;
    case kDriverFeaturesSel: driver_features_sel_ = v; break;
    case kDriverFeatures:
      if (status_ & kStatusFeaturesOk) break;  // frozen once negotiated
      if (driver_features_sel_ == 0) set_low(driver_features_, v);
      if (driver_features_sel_ == 1) set_high(driver_features_, v);
      break;
    case kQueueSel: queue_sel_ = v; break;
    case kQueueNum:
      if (qw) qw->layout.size = v > kMaxQueueSize ? 0 : static_cast<uint16_t>(v);
      break;
    case kQueueReady: queue_ready(v); break;
    case kInterruptAck: ack(v); break;
    case kStatus: write_status(v); break;
    case kQueueDescLow: if (qw) set_low(qw->layout.desc, v); break;
    case kQueueDescHigh: if (qw) set_high(qw->layout.desc, v); break;
    case kQueueDriverLow: if (qw) set_low(qw->layout.avail, v); break;
    case kQueueDriverHigh: if (qw) set_high(qw->layout.avail, v); break;
    case kQueueDeviceLow: if (qw) set_low(qw->layout.used, v); break;
    case kQueueDeviceHigh: if (qw) set_high(qw->layout.used, v); break;
    default: break;  // read-only or unknown registers: writes are dropped
  }
}

void VirtioMmioTransport::queue_ready(uint32_t v) {
  if (queue_sel_ >= queues_.size()) return;
  QueueRegs& q = queues_[queue_sel_];
  if (v == 0) {
    // Linux writes 0 when it deletes a queue after a reset. A live queue cannot be stopped on
    // its own (no VIRTIO_F_RING_RESET); it stays with the device until the next reset.
    q.ready = false;
    return;
  }
  if (q.ready) return;
  const uint16_t max = dev_->queue_max_size(static_cast<uint16_t>(queue_sel_));
  if (!validate_layout(mem_, q.layout, max)) {
    // A queue we cannot use safely: refuse it and tell the driver it must reset us.
    events_.needs_reset();
    return;
  }
  q.ready = true;
}

void VirtioMmioTransport::write_status(uint32_t v) {
  if (v == 0) {
    reset_locked();
    return;
  }
  // The driver only ever adds bits until the next reset; NEEDS_RESET is the device's to set.
  uint32_t nv = (v & ~kStatusNeedsReset) | status_;
  const uint32_t added = nv & ~status_;
  if (added & kStatusFeaturesOk) {
    const uint64_t offered = offered_features();
    // Refusing leaves FEATURES_OK clear, which the driver reads back (spec 3.1.1 step 6).
    if ((driver_features_ & ~offered) != 0 || !(driver_features_ & feature_bit(kFVersion1)))
      nv &= ~kStatusFeaturesOk;
  }
  if ((added & kStatusDriverOk) && !(nv & kStatusFeaturesOk)) nv &= ~kStatusDriverOk;
  status_ = nv;
  if (added & nv & kStatusDriverOk) activate();
}

void VirtioMmioTransport::activate() {
  Activation act;
  act.features = driver_features_;
  act.events = &events_;
  Virtqueue::Options opts;
  opts.event_idx = driver_features_ & feature_bit(kFEventIdx);
  opts.indirect = driver_features_ & feature_bit(kFIndirectDesc);
  for (size_t i = 0; i < queues_.size(); ++i) {
    QueueRegs& q = queues_[i];
    if (!q.ready) {
      act.queues.push_back(nullptr);
      continue;
    }
    const auto idx = static_cast<uint16_t>(i);
    auto vq = Virtqueue::create(mem_, idx, q.layout, dev_->queue_max_size(idx), opts, &events_);
    if (!vq) {  // cannot happen after queue_ready() validated it, but never trust that
      for (auto& r : queues_) r.vq.reset();
      events_.needs_reset();
      return;
    }
    q.vq = std::make_unique<Virtqueue>(std::move(*vq));
    act.queues.push_back(q.vq.get());
  }
  if (!dev_->activate(act)) {
    dev_->reset();
    for (auto& r : queues_) r.vq.reset();
    events_.needs_reset();
    return;
  }
  // Buffers made available before DRIVER_OK were not processed (the spec forbids it); do it now.
  for (size_t i = 0; i < queues_.size(); ++i)
    if (queues_[i].vq) dev_->queue_notify(static_cast<uint16_t>(i));
}

void VirtioMmioTransport::reset_locked() {
  dev_->reset();  // detaches the device from the queues before they are destroyed
  for (auto& q : queues_) q = QueueRegs{};
  status_ = 0;
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  std::lock_guard lk(irq_mu_);
  isr_ = 0;
  needs_reset_ = false;
  if (level_) {
    level_ = false;
    irq_->set_level(false);
  }
}

void VirtioMmioTransport::raise(uint32_t bits) {
  std::lock_guard lk(irq_mu_);
  isr_ |= bits;
  if (!level_) {
    level_ = true;
    irq_->set_level(true);
  }
}

void VirtioMmioTransport::ack(uint32_t bits) {
  std::lock_guard lk(irq_mu_);
  isr_ &= ~bits;
  if (isr_ == 0 && level_) {
    level_ = false;
    irq_->set_level(false);
  }
}

void VirtioMmioTransport::Events::used_buffer(uint16_t) { t_.raise(kIsrUsedBuffer); }

void VirtioMmioTransport::Events::config_changed() {
  {
    std::lock_guard lk(t_.irq_mu_);
    ++t_.config_generation_;
  }
  t_.raise(kIsrConfigChange);
}

void VirtioMmioTransport::Events::needs_reset() {
  {
    std::lock_guard lk(t_.irq_mu_);
    if (t_.needs_reset_) return;
    t_.needs_reset_ = true;
  }
  // Spec 2.1.2: setting DEVICE_NEEDS_RESET comes with a configuration change notification.
  t_.raise(kIsrConfigChange);
}

void VirtioMmioTransport::Events::malformed_chain(uint16_t) { ++t_.malformed_; }

}  // namespace gears::vmm::virtio
