// The overlay's plain-socket backend: one UDP/IPv4 socket, bound to the local endpoint, and a
// receive thread. Always available; the fallback next to DPDK.
//
// Vanished peers: the socket sets IP_RECVERR, so an ICMP "port/host unreachable" answering an
// earlier send lands on the socket's error queue; the receive thread reads it and reports the
// peer through PeerError. Linux also fails the socket's next call with such an error (without
// sending), whichever peer that call is for, so send() retries on those errors rather than
// dropping a good peer's packet for another peer's failure.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "net/backend.h"

namespace gears::vmm::net {

class UdpBackend final : public Backend {
 public:
  // Binds `local` (port 0: any free port; local() tells which).
  static Expected<std::shared_ptr<UdpBackend>> open(const Endpoint& local);
  ~UdpBackend() override;
  UdpBackend(const UdpBackend&) = delete;
  UdpBackend& operator=(const UdpBackend&) = delete;

  std::string_view name() const override { return "udp"; }
  Endpoint local() const override { return local_; }
  Expected<void> start(Receive rx, PeerError on_error) override;
  void stop() override;
  SendStatus send(const Endpoint& to, std::span<const uint8_t> packet) override;

 private:
  // What the receive thread uses, shared with it: if the backend's last owner lets go from
  // inside a callback (on the receive thread, which cannot join itself), the thread is
  // detached and finishes on this state, which closes the sockets when the thread is done.
  struct State {
    int fd = -1;
    int wake_fd = -1;
    Receive rx;
    PeerError on_error;
    std::atomic<bool> stop{false};
    ~State();
  };

  UdpBackend(std::shared_ptr<State> st, Endpoint local) : st_(std::move(st)), local_(local) {}
  static void loop(State& st);
  static void drain_errors(State& st);

  const std::shared_ptr<State> st_;
  const Endpoint local_;
  std::mutex mu_;  // start/stop
  std::thread thread_;
  bool started_ = false;
};

}  // namespace gears::vmm::net
