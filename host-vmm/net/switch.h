// The overlay switch (VNET/P's core, in the VMM): a learning L2 switch whose ports are local
// guest NICs and whose "uplink" is a set of peer hosts reached through a Backend, each frame
// encapsulated in one UDP packet (net/encap.h).
//
// Forwarding, for a frame with destination D arriving on port or from peer I:
//   - D broadcast/multicast, or unknown: flooded. From a local port: to every other local port
//     and every peer. From a peer: to local ports only (split horizon: hosts never relay for
//     one another, so there are no forwarding loops).
//   - D known at a local port: delivered there (not back to I).
//   - D known at a peer: encapsulated and sent there, only when I is local.
// The source address is learned (MAC -> port or peer). Static routes (configuration,
// gearsctl) are never aged or overridden; learned entries age out. A peer may not take over
// a MAC learned at a local port until that entry has aged. The table is bounded.
//
// Everything from a port or a peer is validated (frame length, source address, offload fields,
// overlay header); drops are counted by reason, never logged per packet and never fatal.
//
// Offloads (net/offload.h): a frame from a port may carry a partial checksum or be a TCP GSO
// frame of up to 64 KiB. Local ports get it as it is (each device resolves what its guest did
// not negotiate); for peers it is resolved before encapsulation (net/gso.h): the checksum
// completed, the GSO frame cut into segments of at most max_frame() bytes, one UDP packet each.
//
// Threading: ports send from vCPU threads, the backend delivers from its thread; one mutex
// guards the table, and no lock of the switch is held while a frame is delivered or sent.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "gears/abi/overlay.h"
#include "gears/expected.h"
#include "net/address.h"
#include "net/backend.h"
#include "net/encap.h"
#include "net/offload.h"
#include "net/port.h"

namespace gears::vmm::net {

// Counters, by name in stats(). Drops are named drop_<reason>.
enum class Counter : size_t {
  kPortRxFrames,      // frames sent by local ports (guest TX) and accepted
  kPortTxFrames,      // frames delivered to local ports (guest RX)
  kRemoteTxPackets,   // encapsulated packets handed to the backend
  kRemoteRxPackets,   // valid encapsulated packets from peers
  kFlooded,           // frames flooded (broadcast, multicast, unknown destination)
  kLearned,           // table entries created or moved by learning
  kAged,              // learned entries that expired
  kPeerUnreachable,   // ICMP reports that a peer is gone (learned routes to it are forgotten)
  kDropBadFrame,      // from a port: too short/long, multicast or zero source
  kDropHairpin,       // destination is the port the frame came from
  kDropNoBackend,     // a frame for a peer, but this switch has no backend
  kDropSendUnreachable,
  kDropSendNoBuffer,
  kDropSendError,
  kDropRemoteShort,   // packets from peers, by decapsulation error ...
  kDropRemoteBadMagic,
  kDropRemoteBadVersion,
  kDropRemoteBadFlags,
  kDropRemoteWrongNetwork,
  kDropRemoteBadLength,
  kDropRemoteFrameTooShort,
  kDropRemoteFrameTooLong,
  kDropRemoteBadSource,   // ... multicast or zero source MAC inside a valid packet
  kDropRemoteUnknownPeer, // strict_peers and the sender is not a configured peer
  kDropRemoteToRemote,    // unicast from a peer to a MAC at another peer (no relaying)
  kDropTableFull,         // not learned: the table is full (the frame is still forwarded)
  kPortEncapPackets,      // packets a port's guest encapsulated itself, valid (then as port_rx)
  kDropPortBadEncap,      // ... and invalid ones (header, network, lengths)
  kPortTapFrames,         // frames for a port taken by its tap (a guest-side receive ring)
  kGsoSegmented,          // GSO frames cut into segments for peers (software GSO)
  kCsumCompleted,         // partial checksums completed for peers
  kDropBadOffload,        // from a port: offload fields disagree with the frame (net/gso.h)
  kCount,
};
std::string_view counter_name(Counter c);

class Switch : public std::enable_shared_from_this<Switch> {
 public:
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  struct Options {
    uint32_t network = 1;                       // overlay id in every header
    uint32_t mtu = GEARS_OVERLAY_DEFAULT_MTU;   // largest frame = mtu + 18
    std::chrono::seconds ageing{300};           // learned entries expire after this
    size_t max_entries = 4096;                  // table bound (static routes included)
    bool strict_peers = false;                  // accept packets from configured peers only
    Clock clock;                                // empty: steady_clock::now (tests inject one)
  };

  // One table entry, for gearsctl and tests.
  struct Route {
    MacAddress mac;
    bool is_static = false;
    bool local = false;      // at a local port (`port`), else at a peer (`peer`)
    std::string port;
    Endpoint peer;
    std::chrono::seconds age{0};
  };

  // `backend` may be null: a local-only switch (VMs of this gears-vmm talk to each other).
  static Expected<std::shared_ptr<Switch>> create(Options opts, std::shared_ptr<Backend> backend);
  ~Switch();
  Switch(const Switch&) = delete;
  Switch& operator=(const Switch&) = delete;

  // A new local port; it leaves the switch when the last reference to it goes.
  std::shared_ptr<Port> add_port(std::string name);

  // Static routes (MAC -> peer). A route's peer joins the flood set while the route exists.
  Expected<void> add_route(const MacAddress& mac, const Endpoint& peer);
  bool remove_route(const MacAddress& mac);
  // Peers that receive flooded frames even without a route.
  void add_peer(const Endpoint& peer);
  bool remove_peer(const Endpoint& peer);
  std::vector<Endpoint> peers() const;
  std::vector<Route> routes() const;
  // Unicast MACs at peers now (static routes first), at most `max`; and a number that changes
  // whenever that set may have changed (the guest-side accelerator republishes on a change).
  std::vector<MacAddress> remote_macs(size_t max) const;
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }

  // Drops expired learned entries now (also done as the table is used).
  void expire();

  size_t max_frame() const { return max_frame_; }
  const Options& options() const { return opts_; }
  Backend* backend() const { return backend_.get(); }
  uint64_t count(Counter c) const { return counters_[static_cast<size_t>(c)].load(std::memory_order_relaxed); }
  // Every counter by name, for the control socket's "stats".
  std::vector<std::pair<std::string_view, uint64_t>> stats() const;

 private:
  class LocalPort;
  using Time = std::chrono::steady_clock::time_point;

  struct Entry {
    bool is_static = false;
    uint64_t port = 0;  // local port id; 0 = at a peer
    Endpoint peer;
    Time seen;
  };
  // Where one frame goes: local ports and/or peers (resolved under the lock, used after it).
  struct Targets {
    std::vector<std::shared_ptr<LocalPort>> ports;
    std::vector<Endpoint> peers;
  };

  Switch(Options opts, std::shared_ptr<Backend> backend);
  Expected<void> start();

  // `encapsulated`: the same frame behind an overlay header, sent as is to a peer (plain
  // frames only: `off` then has no state).
  Forwarded from_port(uint64_t port_id, std::span<const uint8_t> frame, const Offload& off,
                      std::span<const uint8_t> encapsulated = {});
  Forwarded from_port_encapsulated(uint64_t port_id, std::span<const uint8_t> packet);
  void from_peer(const Endpoint& from, std::span<const uint8_t> packet);
  void peer_error(const Endpoint& peer, int err);
  void remove_port(uint64_t port_id);

  // Called with mu_ held.
  void learn_locked(const MacAddress& src, uint64_t port_id, const Endpoint& peer, Time now);
  const Entry* lookup_locked(const MacAddress& dst, Time now);
  void expire_locked(Time now);
  void all_ports_locked(uint64_t except, Targets& t) const;
  void rebuild_flood_locked();
  Time now() const;

  void deliver(const Targets& t, std::span<const uint8_t> frame, const Offload& off,
               std::span<const uint8_t> encapsulated = {});
  void send_to_peers(const std::vector<Endpoint>& peers, std::span<const uint8_t> frame,
                     std::span<const uint8_t> encapsulated);
  void changed() { generation_.fetch_add(1, std::memory_order_acq_rel); }
  void bump(Counter c, uint64_t n = 1) { counters_[static_cast<size_t>(c)].fetch_add(n, std::memory_order_relaxed); }

  const Options opts_;
  const size_t max_frame_;
  const std::shared_ptr<Backend> backend_;

  mutable std::mutex mu_;
  uint64_t next_port_id_ = 1;
  std::map<uint64_t, std::pair<std::string, std::weak_ptr<LocalPort>>> ports_;
  std::unordered_map<MacAddress, Entry> table_;
  std::set<Endpoint> peers_;          // configured peers
  std::vector<Endpoint> flood_;       // peers_ plus every static route's peer
  Time last_sweep_{};
  std::atomic<uint64_t> generation_{1};

  std::array<std::atomic<uint64_t>, static_cast<size_t>(Counter::kCount)> counters_{};
};

}  // namespace gears::vmm::net
