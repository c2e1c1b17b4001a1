// Test helpers for the overlay: frame builders, a recording Port, a scriptable Backend, and a
// bounded wait for things other threads do (the bound only keeps a broken test from hanging).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "net/address.h"
#include "net/backend.h"
#include "net/encap.h"
#include "net/offload.h"
#include "net/port.h"

namespace gears::vmm::net::test {

using Bytes = std::vector<uint8_t>;

inline MacAddress mac(uint8_t last) { return {{0x52, 0x54, 0x00, 0x00, 0x00, last}}; }

// dst, src, ethertype 0x0800, then `payload` bytes of a pattern derived from `tag`.
inline Bytes frame(const MacAddress& dst, const MacAddress& src, size_t payload = 46, uint8_t tag = 0) {
  Bytes f(dst.bytes.begin(), dst.bytes.end());
  f.insert(f.end(), src.bytes.begin(), src.bytes.end());
  f.push_back(0x08);
  f.push_back(0x00);
  for (size_t i = 0; i < payload; ++i) f.push_back(static_cast<uint8_t>(tag + i));
  return f;
}

// `f` behind an overlay header for `network` (a peer's packet, or a guest-side accelerator's).
inline Bytes encap(const Bytes& f, uint32_t network = 1) {
  Bytes p(kHeaderSize + f.size());
  EXPECT_EQ(encapsulate(network, f, p), p.size());
  return p;
}

template <class F>
bool eventually(F done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

// Records what a device side receives from a Port (frames and their offload state).
struct Inbox {
  std::mutex mu;
  std::vector<Bytes> frames;
  std::vector<Offload> offloads;
  FrameReceiver receiver() {
    return [this](std::span<const uint8_t> f, const Offload& o) {
      std::lock_guard lk(mu);
      frames.emplace_back(f.begin(), f.end());
      offloads.push_back(o);
    };
  }
  size_t size() {
    std::lock_guard lk(mu);
    return frames.size();
  }
  Bytes at(size_t i) {
    std::lock_guard lk(mu);
    return frames.at(i);
  }
  Offload offload_at(size_t i) {
    std::lock_guard lk(mu);
    return offloads.at(i);
  }
};

// A Port that records what a device sends and lets the test deliver frames to the device.
class FakePort final : public Port {
 public:
  using Port::send;
  std::string_view name() const override { return "fake"; }
  void send(std::span<const uint8_t> f, const Offload& o) override {
    if (before_send) before_send();
    std::lock_guard lk(mu_);
    sent.emplace_back(f.begin(), f.end());
    sent_offloads.push_back(o);
  }
  size_t sent_count() {
    std::lock_guard lk(mu_);
    return sent.size();
  }
  void set_receiver(FrameReceiver r) override {
    std::lock_guard lk(mu_);
    rx_ = std::move(r);
  }
  bool attached() {
    std::lock_guard lk(mu_);
    return static_cast<bool>(rx_);
  }
  // Delivers as the switch does: under the port's lock.
  void inject(const Bytes& f, const Offload& o = {}) {
    std::lock_guard lk(mu_);
    if (rx_) rx_(f, o);
  }
  std::vector<Bytes> sent;
  std::vector<Offload> sent_offloads;
  std::function<void()> before_send;  // runs on the sending thread (a test's gate); set before use

 private:
  std::mutex mu_;
  FrameReceiver rx_;
};

// A Backend whose sends are recorded (and may be made to fail per peer) and whose receive
// and error callbacks the test calls directly.
class FakeBackend final : public Backend {
 public:
  std::string_view name() const override { return "fake"; }
  Endpoint local() const override { return {0x7f000001, 1000}; }
  Expected<void> start(Receive rx, PeerError err) override {
    rx_ = std::move(rx);
    err_ = std::move(err);
    return {};
  }
  void stop() override {}
  SendStatus send(const Endpoint& to, std::span<const uint8_t> p) override {
    std::lock_guard lk(mu_);
    auto it = fail_.find(to);
    if (it != fail_.end()) return it->second;
    sent.emplace_back(to, Bytes(p.begin(), p.end()));
    return SendStatus::kOk;
  }
  void fail_to(const Endpoint& ep, SendStatus s) {
    std::lock_guard lk(mu_);
    fail_[ep] = s;
  }
  void receive(const Endpoint& from, const Bytes& packet) { rx_(from, packet); }
  void report_error(const Endpoint& peer, int err) { err_(peer, err); }
  std::vector<std::pair<Endpoint, Bytes>> take() {
    std::lock_guard lk(mu_);
    return std::exchange(sent, {});
  }
  std::vector<std::pair<Endpoint, Bytes>> sent;

 private:
  std::mutex mu_;
  std::map<Endpoint, SendStatus> fail_;
  Receive rx_;
  PeerError err_;
};

}  // namespace gears::vmm::net::test
