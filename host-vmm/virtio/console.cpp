#include "virtio/console.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

constexpr uint16_t kReceiveQ = 0;
constexpr uint16_t kTransmitQ = 1;
constexpr uint16_t kQueueMax = 128;
// Input read ahead of the guest's receive buffers; beyond it the reader stops reading, so a
// guest that never reads cannot make the VMM buffer without bound.
constexpr size_t kPendingMax = 64 * 1024;

// struct virtio_console_config (spec 5.3.4): cols, rows, max_nr_ports, emerg_wr.
constexpr uint32_t kConfigSize = 12;

// Writes all of `data` unless the fd fails; output to a closed or full non-blocking fd is
// dropped rather than stalling the vCPU.
void write_all(int fd, std::span<const uint8_t> data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    data = data.subspan(static_cast<size_t>(n));
  }
}

class Console final : public VirtioDevice {
 public:
  Console(int out_fd, int in_fd) : out_fd_(out_fd), in_fd_(in_fd) {
    if (in_fd_ < 0) return;
    wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ >= 0) reader_ = std::thread([this] { reader_loop(); });
  }

  ~Console() override {
    if (reader_.joinable()) {
      {
        std::lock_guard lk(mu_);
        stop_ = true;
      }
      wake();
      reader_.join();
    }
    if (wake_fd_ >= 0) close(wake_fd_);
  }

  std::string_view name() const override { return "virtio-console"; }
  uint32_t device_id() const override { return kDeviceIdConsole; }
  uint64_t features() const override { return 0; }
  uint16_t num_queues() const override { return 2; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueMax; }
  uint32_t config_size() const override { return kConfigSize; }

  void read_config(uint32_t offset, std::span<uint8_t> data) override {
    std::array<uint8_t, kConfigSize> cfg{};
    const uint32_t max_nr_ports = 1;
    std::memcpy(cfg.data() + 4, &max_nr_ports, sizeof max_nr_ports);
    std::memcpy(data.data(), cfg.data() + offset, data.size());
  }

  Expected<void> activate(const Activation& act) override {
    std::lock_guard lk(mu_);
    if (act.queues.size() != 2 || !act.queues[kReceiveQ] || !act.queues[kTransmitQ])
      return fail("virtio-console needs its receive and transmit queues");
    rx_ = act.queues[kReceiveQ];
    tx_ = act.queues[kTransmitQ];
    return {};
  }

  void queue_notify(uint16_t queue) override {
    std::lock_guard lk(mu_);
    if (queue == kTransmitQ) drain_tx();
    if (queue == kReceiveQ) deliver_rx();
  }

  void reset() override {
    std::lock_guard lk(mu_);
    rx_ = nullptr;
    tx_ = nullptr;
  }

 private:
  // Guest output: every readable byte of every chain goes to out_fd, in order.
  void drain_tx() {
    if (!tx_) return;
    while (auto chain = tx_->pop()) {
      for (const auto& seg : chain->readable) {
        auto host = tx_->memory().span(seg.gpa, seg.len);
        if (host && out_fd_ >= 0) write_all(out_fd_, *host);
      }
      tx_->push(chain->head, 0);
    }
    tx_->signal();
  }

  // Host input: fill receive buffers while input is pending. Called with mu_ held.
  void deliver_rx() {
    if (!rx_) return;
    const bool was_full = pending_.size() >= kPendingMax;
    while (!pending_.empty()) {
      auto chain = rx_->pop();
      if (!chain) break;
      const size_t n = copy_to_segments(
          rx_->memory(), chain->writable, 0,
          std::span(reinterpret_cast<const uint8_t*>(pending_.data()), pending_.size()));
      pending_.erase(0, n);
      rx_->push(chain->head, static_cast<uint32_t>(n));
    }
    rx_->signal();
    if (was_full && pending_.size() < kPendingMax) wake();  // the reader may read again
  }

  void wake() {
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
  }

  void reader_loop() {
    bool eof = false;
    std::array<char, 4096> buf;
    for (;;) {
      size_t room;
      {
        std::lock_guard lk(mu_);
        if (stop_) return;
        room = kPendingMax - std::min(kPendingMax, pending_.size());
      }
      pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {in_fd_, POLLIN, 0}};
      const nfds_t nfds = (!eof && room > 0) ? 2 : 1;
      if (poll(fds, nfds, -1) < 0) {
        if (errno == EINTR) continue;
        return;
      }
      if (fds[0].revents & POLLIN) {
        uint64_t v;
        [[maybe_unused]] ssize_t r = ::read(wake_fd_, &v, sizeof v);
      }
      if (nfds < 2 || !(fds[1].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(in_fd_, buf.data(), std::min(room, buf.size()));
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n <= 0) {  // end of input (or a dead fd): stop polling it
        eof = true;
        continue;
      }
      std::lock_guard lk(mu_);
      pending_.append(buf.data(), static_cast<size_t>(n));
      deliver_rx();
    }
  }

  const int out_fd_;
  const int in_fd_;
  int wake_fd_ = -1;
  std::thread reader_;

  std::mutex mu_;  // guards everything below; held while touching the queues
  bool stop_ = false;
  std::string pending_;  // input not yet delivered
  Virtqueue* rx_ = nullptr;
  Virtqueue* tx_ = nullptr;
};

}  // namespace

std::unique_ptr<VirtioDevice> make_virtio_console(int out_fd, int in_fd) {
  return std::make_unique<Console>(out_fd, in_fd);
}

}  // namespace gears::vmm::virtio
