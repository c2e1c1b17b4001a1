#include "virtio/net.h"

#include <array>
#include <atomic>
#include <cstring>
#include <deque>
#include <mutex>
#include <vector>

#include "gears/abi/overlay.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

constexpr uint16_t kReceiveQ = 0;
constexpr uint16_t kTransmitQ = 1;
constexpr uint16_t kQueueMax = 256;

// Feature bits (spec 5.1.3).
constexpr unsigned kNetFMtu = 3;
constexpr unsigned kNetFMac = 5;
constexpr unsigned kNetFStatus = 16;
constexpr uint16_t kNetSLinkUp = 1;

// struct virtio_net_hdr_v1 (spec 5.1.6): with VERSION_1 always 12 bytes, num_buffers included.
struct NetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(NetHdr) == 12);
constexpr uint8_t kHdrFNeedsCsum = 1;
constexpr uint8_t kGsoNone = 0;

// struct virtio_net_config up to mtu: mac[6], status, max_virtqueue_pairs, mtu.
constexpr uint32_t kConfigSize = 12;

class Net final : public VirtioNetDevice {
 public:
  Net(std::shared_ptr<net::Port> port, const net::MacAddress& mac, VirtioNetOptions opts)
      : port_(std::move(port)), mac_(mac), opts_(opts),
        max_frame_(size_t{opts.mtu ? opts.mtu : GEARS_OVERLAY_DEFAULT_MTU} + GEARS_OVERLAY_FRAME_OVERHEAD),
        tx_buf_(max_frame_) {
    port_->set_receiver([this](std::span<const uint8_t> f) { receive(f); });
  }
  // Detach first: once set_receiver returns, no delivery is running into this object.
  ~Net() override { port_->set_receiver({}); }
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  std::string_view name() const override { return "virtio-net"; }
  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t features() const override {
    return feature_bit(kNetFMac) | feature_bit(kNetFStatus) | (opts_.mtu ? feature_bit(kNetFMtu) : 0);
  }
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueMax; }
  uint32_t config_size() const override { return kConfigSize; }

  void read_config(uint32_t offset, std::span<uint8_t> data) override {
    std::array<uint8_t, kConfigSize> cfg{};
    std::memcpy(cfg.data(), mac_.bytes.data(), 6);
    const uint16_t status = kNetSLinkUp, pairs = 1, mtu = opts_.mtu;
    std::memcpy(cfg.data() + 6, &status, 2);
    std::memcpy(cfg.data() + 8, &pairs, 2);
    std::memcpy(cfg.data() + 10, &mtu, 2);
    std::memcpy(data.data(), cfg.data() + offset, data.size());
  }

  Expected<void> activate(const Activation& act) override {
    if (act.queues.size() != 2 || !act.queues[kReceiveQ] || !act.queues[kTransmitQ])
      return fail("virtio-net needs its receive and transmit queues");
    std::scoped_lock lk(tx_mu_, rx_mu_);
    rx_ = act.queues[kReceiveQ];
    tx_ = act.queues[kTransmitQ];
    return {};
  }

  void queue_notify(uint16_t queue) override {
    if (queue == kTransmitQ) {
      std::lock_guard lk(tx_mu_);
      drain_tx();
    } else if (queue == kReceiveQ) {
      std::lock_guard lk(rx_mu_);
      drain_pending();
    }
  }

  void reset() override {
    std::scoped_lock lk(tx_mu_, rx_mu_);
    rx_ = nullptr;
    tx_ = nullptr;
    pending_.clear();  // frames for a driver that has gone; the next one starts afresh
    rx_pending_ = 0;
  }

  VirtioNetStats stats() const override {
    VirtioNetStats s;
    s.tx_frames = tx_frames_;
    s.tx_bytes = tx_bytes_;
    s.tx_malformed = tx_malformed_;
    s.rx_frames = rx_frames_;
    s.rx_bytes = rx_bytes_;
    s.rx_dropped_full = rx_dropped_full_;
    s.rx_dropped_small = rx_dropped_small_;
    s.rx_dropped_inactive = rx_dropped_inactive_;
    s.rx_pending = rx_pending_;
    return s;
  }

 private:
  // Guest transmit. tx_mu_ is held while the port forwards the frame, which keeps one
  // device's frames in order; the switch takes no lock of ours, so this cannot deadlock with
  // another device transmitting to us (our receive side has its own lock).
  void drain_tx() {
    if (!tx_) return;
    GuestMemory& mem = tx_->memory();
    while (auto c = tx_->pop()) {
      const uint64_t total = c->readable_bytes();
      NetHdr h{};
      bool ok = total >= sizeof h + GEARS_OVERLAY_MIN_FRAME && total - sizeof h <= max_frame_ &&
                copy_from_segments(mem, c->readable, 0,
                                   std::span(reinterpret_cast<uint8_t*>(&h), sizeof h)) == sizeof h;
      // No offloads were offered, so a driver asking for one is broken or hostile.
      ok = ok && h.gso_type == kGsoNone && !(h.flags & kHdrFNeedsCsum);
      size_t len = 0;
      if (ok) {
        len = static_cast<size_t>(total - sizeof h);
        ok = copy_from_segments(mem, c->readable, sizeof h, std::span(tx_buf_.data(), len)) == len;
      }
      tx_->push(c->head, 0);
      if (!ok) {
        ++tx_malformed_;
        continue;
      }
      ++tx_frames_;
      tx_bytes_ += len;
      port_->send(std::span<const uint8_t>(tx_buf_.data(), len));
    }
    tx_->signal();
  }

  // A frame from the switch (any thread).
  void receive(std::span<const uint8_t> frame) {
    std::lock_guard lk(rx_mu_);
    if (!rx_) {
      ++rx_dropped_inactive_;
      return;
    }
    // Frames already waiting go first, so the order on the wire is kept.
    if (pending_.empty() && fill_one(frame)) {
      rx_->signal();
      return;
    }
    if (pending_.size() >= opts_.rx_pending_max) {
      ++rx_dropped_full_;
    } else {
      pending_.emplace_back(frame.begin(), frame.end());
      rx_pending_ = pending_.size();
    }
    drain_pending();
  }

  // Moves waiting frames into posted buffers. Called with rx_mu_ held.
  void drain_pending() {
    if (!rx_) return;
    while (!pending_.empty() && fill_one(pending_.front())) pending_.pop_front();
    rx_pending_ = pending_.size();
    rx_->signal();
  }

  // Puts one frame into the next posted buffer; false when the driver has posted none. A
  // buffer too small for the frame is returned empty and the frame dropped (Linux posts
  // buffers of at least 1518 bytes plus header, so only a broken driver gets here).
  bool fill_one(std::span<const uint8_t> frame) {
    auto c = rx_->pop();
    if (!c) return false;
    GuestMemory& mem = rx_->memory();
    if (c->writable_bytes() < sizeof(NetHdr) + frame.size()) {
      ++rx_dropped_small_;
      rx_->push(c->head, 0);
      return true;
    }
    NetHdr h{};
    h.num_buffers = 1;
    copy_to_segments(mem, c->writable, 0, std::span(reinterpret_cast<const uint8_t*>(&h), sizeof h));
    copy_to_segments(mem, c->writable, sizeof h, frame);
    rx_->push(c->head, static_cast<uint32_t>(sizeof h + frame.size()));
    ++rx_frames_;
    rx_bytes_ += frame.size();
    return true;
  }

  const std::shared_ptr<net::Port> port_;
  const net::MacAddress mac_;
  const VirtioNetOptions opts_;
  const size_t max_frame_;

  std::mutex tx_mu_;  // the transmit queue and tx_buf_
  Virtqueue* tx_ = nullptr;
  std::vector<uint8_t> tx_buf_;

  std::mutex rx_mu_;  // the receive queue and pending_
  Virtqueue* rx_ = nullptr;
  std::deque<std::vector<uint8_t>> pending_;

  std::atomic<uint64_t> tx_frames_{0}, tx_bytes_{0}, tx_malformed_{0};
  std::atomic<uint64_t> rx_frames_{0}, rx_bytes_{0}, rx_dropped_full_{0}, rx_dropped_small_{0},
      rx_dropped_inactive_{0}, rx_pending_{0};
};

}  // namespace

std::unique_ptr<VirtioNetDevice> make_virtio_net(std::shared_ptr<net::Port> port,
                                                 const net::MacAddress& mac, VirtioNetOptions opts) {
  return std::make_unique<Net>(std::move(port), mac, opts);
}

}  // namespace gears::vmm::virtio
