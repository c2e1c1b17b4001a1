// A Backend moves overlay packets (a gears_overlay_hdr and its frame: the UDP payload) between
// this host and peer hosts. The switch encapsulates, decides the destination endpoint and
// validates what comes in; the backend only does packet I/O. Two implementations are planned:
// plain UDP sockets (udp_backend.h, always available, the fallback) and DPDK (which would build
// the outer Ethernet/IPv4/UDP headers itself and send in bursts, hence flush()).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "gears/expected.h"
#include "net/address.h"

namespace gears::vmm::net {

// Why a send did not happen; the switch turns these into counters.
enum class SendStatus {
  kOk,
  kUnreachable,  // the peer or its network cannot be reached (ICMP / routing error)
  kNoBuffer,     // local queue full (EAGAIN/ENOBUFS): dropped rather than blocking a vCPU
  kError,        // anything else
};

class Backend {
 public:
  // A received UDP payload and who sent it; called on the backend's own thread(s).
  using Receive = std::function<void(const Endpoint& from, std::span<const uint8_t> packet)>;
  // A peer reported unreachable after the fact (ICMP port/host unreachable for an earlier send).
  using PeerError = std::function<void(const Endpoint& peer, int err)>;

  virtual ~Backend() = default;
  virtual std::string_view name() const = 0;
  // The endpoint peers send to (the bound address, with the real port when 0 was asked for).
  virtual Endpoint local() const = 0;
  // Starts delivering packets to `rx` and errors to `on_error` until stop() (or destruction).
  virtual Expected<void> start(Receive rx, PeerError on_error) = 0;
  // Stops delivery; when it returns, no callback is running or will run.
  virtual void stop() = 0;
  // Sends one payload to `to`. Never blocks for long; may queue until flush().
  virtual SendStatus send(const Endpoint& to, std::span<const uint8_t> packet) = 0;
  virtual void flush() {}
};

}  // namespace gears::vmm::net
