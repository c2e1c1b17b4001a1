#include "virtio/net.h"

#include <pthread.h>

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "gears/abi/overlay.h"
#include "net/gso.h"
#include "virtio/net_hdr.h"
#include "virtio/net_rx.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

constexpr uint16_t kReceiveQ = 0;
constexpr uint16_t kTransmitQ = 1;
constexpr uint16_t kQueueMax = 256;
constexpr uint16_t kNetSLinkUp = 1;
// Completed transmit buffers are published to the driver every this many frames, not only at
// the end of a drain, so a long drain does not leave the guest's ring full.
constexpr unsigned kTxSignalBatch = 32;

// Offloads, both directions, and mergeable receive buffers (virtio/net_hdr.h).
constexpr uint64_t kOffloadFeatures =
    feature_bit(kNetFCsum) | feature_bit(kNetFGuestCsum) | feature_bit(kNetFGuestTso4) |
    feature_bit(kNetFGuestTso6) | feature_bit(kNetFGuestEcn) | feature_bit(kNetFHostTso4) |
    feature_bit(kNetFHostTso6) | feature_bit(kNetFHostEcn) | feature_bit(kNetFMrgRxbuf);

// struct virtio_net_config up to mtu: mac[6], status, max_virtqueue_pairs, mtu.
constexpr uint32_t kConfigSize = 12;

class Net final : public VirtioNetDevice {
 public:
  Net(std::shared_ptr<net::Port> port, const net::MacAddress& mac, VirtioNetOptions opts)
      : port_(std::move(port)), mac_(mac), opts_(opts),
        max_frame_(size_t{opts.mtu ? opts.mtu : GEARS_OVERLAY_DEFAULT_MTU} + GEARS_OVERLAY_FRAME_OVERHEAD),
        tx_buf_(net::kMaxGsoFrame), rx_(opts.rx_pending_max, opts.rx_pending_bytes_max) {
    port_->set_receiver([this](std::span<const uint8_t> f, const net::Offload& o) { receive(f, o); });
    if (opts_.tx_thread) tx_thread_ = std::thread([this] { tx_loop(); });
  }
  // Stop transmitting, then detach: once set_receiver returns, no delivery is running into
  // this object.
  ~Net() override {
    if (tx_thread_.joinable()) {
      {
        std::lock_guard lk(tx_wake_mu_);
        tx_stop_ = true;
      }
      tx_wake_cv_.notify_one();
      tx_thread_.join();
    }
    port_->set_receiver({});
  }
  Net(const Net&) = delete;
  Net& operator=(const Net&) = delete;

  std::string_view name() const override { return "virtio-net"; }
  uint32_t device_id() const override { return kDeviceIdNet; }
  uint64_t features() const override {
    return feature_bit(kNetFMac) | feature_bit(kNetFStatus) | (opts_.mtu ? feature_bit(kNetFMtu) : 0) |
           (opts_.offloads ? kOffloadFeatures : 0);
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
    tx_ = act.queues[kTransmitQ];
    tx_features_ = act.features;
    rx_features_ = act.features;
    rx_accepts_ = rx_accepts(act.features);
    rx_.attach(act.queues[kReceiveQ], (act.features & feature_bit(kNetFMrgRxbuf)) != 0);
    return {};
  }

  void queue_notify(uint16_t queue) override {
    if (queue == kTransmitQ) {
      ++tx_kicks_;
      if (tx_thread_.joinable()) {
        {
          std::lock_guard lk(tx_wake_mu_);
          tx_wake_ = true;
        }
        tx_wake_cv_.notify_one();
        return;
      }
      std::lock_guard lk(tx_mu_);
      drain_tx();
    } else if (queue == kReceiveQ) {
      ++rx_kicks_;
      std::lock_guard lk(rx_mu_);
      rx_.drain();
      rx_.signal();
    }
  }

  void reset() override {
    std::scoped_lock lk(tx_mu_, rx_mu_);
    rx_.detach();
    tx_ = nullptr;
  }

  VirtioNetStats stats() const override {
    VirtioNetStats s;
    s.tx_frames = tx_frames_;
    s.tx_bytes = tx_bytes_;
    s.tx_malformed = tx_malformed_;
    s.tx_bad_csum = tx_bad_csum_;
    s.tx_bad_gso = tx_bad_gso_;
    s.tx_csum = tx_csum_;
    s.tx_gso = tx_gso_;
    const NetRx::Counters& r = rx_.counters();
    s.rx_frames = r.frames;
    s.rx_bytes = r.bytes;
    s.rx_gso = rx_gso_;
    s.rx_merged = r.merged;
    s.rx_segmented = rx_segmented_;
    s.rx_csum_completed = rx_csum_completed_;
    s.rx_dropped_malformed = rx_dropped_malformed_;
    s.rx_dropped_full = r.dropped_full;
    s.rx_dropped_small = r.dropped_small;
    s.rx_dropped_inactive = rx_dropped_inactive_;
    s.rx_pending = r.pending;
    s.tx_kicks = tx_kicks_;
    s.rx_kicks = rx_kicks_;
    s.tx_interrupts = tx_interrupts_;
    s.tx_passes = tx_passes_;
    s.rx_interrupts = r.interrupts;
    return s;
  }

 private:
  void tx_loop() {
    pthread_setname_np(pthread_self(), "gears-net-tx");
    std::unique_lock wk(tx_wake_mu_);
    for (;;) {
      tx_wake_cv_.wait(wk, [this] { return tx_wake_ || tx_stop_; });
      if (tx_stop_) return;
      tx_wake_ = false;
      wk.unlock();
      {
        std::lock_guard lk(tx_mu_);
        drain_tx();
      }
      wk.lock();
    }
  }

  // Guest transmit: every chain the driver made available. On the transmit thread the driver's
  // notifications stay off until the ring is empty, then are re-armed and the ring looked at
  // once more (a frame added in between would otherwise wait for the next kick). tx_mu_ is held
  // while the port forwards the frames, which keeps one device's frames in order; the switch
  // takes no lock of ours, so this cannot deadlock with another device transmitting to us (our
  // receive side has its own lock).
  void drain_tx() {
    if (!tx_) return;
    ++tx_passes_;
    const bool suppress = tx_thread_.joinable();
    if (suppress) tx_->disable_notifications();
    unsigned n = 0;
    for (;;) {
      while (auto c = tx_->pop()) {
        transmit(*c);
        if (++n % kTxSignalBatch == 0 && tx_->signal()) ++tx_interrupts_;
      }
      if (!suppress || !tx_->enable_notifications()) break;
      tx_->disable_notifications();
    }
    if (tx_->signal()) ++tx_interrupts_;
  }

  void transmit(const Chain& c) {
    GuestMemory& mem = tx_->memory();
    const uint64_t total = c.readable_bytes();
    NetHdr h{};
    net::Offload off;
    TxHdrError err = TxHdrError::kLength;
    size_t len = 0;
    if (total >= sizeof h + GEARS_OVERLAY_MIN_FRAME && total - sizeof h <= net::kMaxGsoFrame &&
        copy_from_segments(mem, c.readable, 0, std::span(reinterpret_cast<uint8_t*>(&h), sizeof h)) == sizeof h) {
      len = static_cast<size_t>(total - sizeof h);
      // Copied out once, then checked: the guest cannot change what was validated.
      if (copy_from_segments(mem, c.readable, sizeof h, std::span(tx_buf_.data(), len)) == len)
        err = parse_tx_hdr(h, std::span<const uint8_t>(tx_buf_.data(), len), tx_features_, max_frame_, off);
    }
    tx_->push(c.head, 0);
    if (err != TxHdrError::kNone) {
      ++tx_malformed_;
      if (err == TxHdrError::kCsum) ++tx_bad_csum_;
      if (err == TxHdrError::kGso) ++tx_bad_gso_;
      return;
    }
    ++tx_frames_;
    tx_bytes_ += len;
    if (off.needs_csum) ++tx_csum_;
    if (off.is_gso()) ++tx_gso_;
    port_->send(std::span<const uint8_t>(tx_buf_.data(), len), off);
  }

  // A frame from the switch (any thread). The sender's device (or the switch) has checked the
  // offload fields against the frame; resolve() checks them again before it relies on them.
  // Segments may be as large as the largest overlay frame: the switch enforced its own MTU.
  void receive(std::span<const uint8_t> frame, const net::Offload& off) {
    std::lock_guard lk(rx_mu_);
    if (!rx_.attached()) {
      ++rx_dropped_inactive_;
      return;
    }
    const net::Resolution r = net::resolve(frame, off, rx_accepts_, GEARS_OVERLAY_MAX_FRAME,
                                           [this](std::span<const uint8_t> f, const net::Offload& o) {
                                             if (o.is_gso()) ++rx_gso_;
                                             rx_.deliver(rx_hdr(o, rx_features_), f);
                                           });
    if (r == net::Resolution::kSegmented) ++rx_segmented_;
    if (r == net::Resolution::kCsumCompleted) ++rx_csum_completed_;
    if (r == net::Resolution::kMalformed) ++rx_dropped_malformed_;
    rx_.signal();
  }

  const std::shared_ptr<net::Port> port_;
  const net::MacAddress mac_;
  const VirtioNetOptions opts_;
  const size_t max_frame_;  // largest plain frame, and largest segment of a GSO frame

  std::mutex tx_mu_;  // the transmit queue, tx_buf_, tx_features_
  Virtqueue* tx_ = nullptr;
  uint64_t tx_features_ = 0;
  std::vector<uint8_t> tx_buf_;

  // The transmit thread (opts_.tx_thread) and what wakes it.
  std::mutex tx_wake_mu_;
  std::condition_variable tx_wake_cv_;
  bool tx_wake_ = false, tx_stop_ = false;
  std::thread tx_thread_;  // started in the constructor's body, once every member exists

  std::mutex rx_mu_;  // rx_ (the receive queue and its pending frames), rx_features_, rx_accepts_
  NetRx rx_;
  uint64_t rx_features_ = 0;
  net::Accepts rx_accepts_;

  std::atomic<uint64_t> tx_frames_{0}, tx_bytes_{0}, tx_malformed_{0}, tx_bad_csum_{0}, tx_bad_gso_{0},
      tx_csum_{0}, tx_gso_{0};
  std::atomic<uint64_t> rx_gso_{0}, rx_segmented_{0}, rx_csum_completed_{0}, rx_dropped_malformed_{0},
      rx_dropped_inactive_{0};
  std::atomic<uint64_t> tx_kicks_{0}, rx_kicks_{0}, tx_interrupts_{0}, tx_passes_{0};
};

}  // namespace

std::vector<std::pair<std::string_view, uint64_t>> VirtioNetStats::named() const {
  return {{"tx_frames", tx_frames},
          {"tx_bytes", tx_bytes},
          {"tx_malformed", tx_malformed},
          {"tx_bad_csum", tx_bad_csum},
          {"tx_bad_gso", tx_bad_gso},
          {"tx_csum", tx_csum},
          {"tx_gso", tx_gso},
          {"rx_frames", rx_frames},
          {"rx_bytes", rx_bytes},
          {"rx_gso", rx_gso},
          {"rx_merged", rx_merged},
          {"rx_segmented", rx_segmented},
          {"rx_csum_completed", rx_csum_completed},
          {"rx_dropped_malformed", rx_dropped_malformed},
          {"rx_dropped_full", rx_dropped_full},
          {"rx_dropped_small", rx_dropped_small},
          {"rx_dropped_inactive", rx_dropped_inactive},
          {"rx_pending", rx_pending},
          {"tx_kicks", tx_kicks},
          {"rx_kicks", rx_kicks},
          {"tx_interrupts", tx_interrupts},
          {"tx_passes", tx_passes},
          {"rx_interrupts", rx_interrupts}};
}

std::unique_ptr<VirtioNetDevice> make_virtio_net(std::shared_ptr<net::Port> port,
                                                 const net::MacAddress& mac, VirtioNetOptions opts) {
  return std::make_unique<Net>(std::move(port), mac, opts);
}

}  // namespace gears::vmm::virtio
