#include "net/switch.h"

#include <algorithm>

#include "net/gso.h"

namespace gears::vmm::net {

namespace {

constexpr std::array<std::string_view, static_cast<size_t>(Counter::kCount)> kCounterNames = {
    "port_rx_frames",
    "port_tx_frames",
    "remote_tx_packets",
    "remote_rx_packets",
    "flooded",
    "learned",
    "aged",
    "peer_unreachable",
    "drop_bad_frame",
    "drop_hairpin",
    "drop_no_backend",
    "drop_send_unreachable",
    "drop_send_no_buffer",
    "drop_send_error",
    "drop_remote_short",
    "drop_remote_bad_magic",
    "drop_remote_bad_version",
    "drop_remote_bad_flags",
    "drop_remote_wrong_network",
    "drop_remote_bad_length",
    "drop_remote_frame_too_short",
    "drop_remote_frame_too_long",
    "drop_remote_bad_source",
    "drop_remote_unknown_peer",
    "drop_remote_to_remote",
    "drop_table_full",
    "port_encap_packets",
    "drop_port_bad_encap",
    "port_tap_frames",
    "gso_segmented",
    "csum_completed",
    "drop_bad_offload",
};

Counter decap_counter(DecapError e) {
  switch (e) {
    case DecapError::kShort: return Counter::kDropRemoteShort;
    case DecapError::kBadMagic: return Counter::kDropRemoteBadMagic;
    case DecapError::kBadVersion: return Counter::kDropRemoteBadVersion;
    case DecapError::kBadFlags: return Counter::kDropRemoteBadFlags;
    case DecapError::kWrongNetwork: return Counter::kDropRemoteWrongNetwork;
    case DecapError::kBadLength: return Counter::kDropRemoteBadLength;
    case DecapError::kFrameTooShort: return Counter::kDropRemoteFrameTooShort;
    case DecapError::kFrameTooLong:
    case DecapError::kNone: break;
  }
  return Counter::kDropRemoteFrameTooLong;
}

// A usable source address: a station, not a group, not all zeroes.
bool valid_source(const MacAddress& m) { return !m.is_multicast() && !m.is_zero(); }

}  // namespace

std::string_view counter_name(Counter c) { return kCounterNames[static_cast<size_t>(c)]; }

// A guest NIC's attachment. The receiver runs under rx_mu_, which is what lets
// set_receiver() promise that a detached receiver is no longer running.
class Switch::LocalPort final : public Port {
 public:
  LocalPort(std::shared_ptr<Switch> sw, uint64_t id, std::string name)
      : sw_(std::move(sw)), id_(id), name_(std::move(name)) {}
  ~LocalPort() override { sw_->remove_port(id_); }

  std::string_view name() const override { return name_; }
  void send(std::span<const uint8_t> frame, const Offload& off) override { sw_->from_port(id_, frame, off); }
  Forwarded forward(std::span<const uint8_t> frame, const Offload& off) override {
    return sw_->from_port(id_, frame, off);
  }
  Forwarded send_encapsulated(std::span<const uint8_t> packet) override {
    return sw_->from_port_encapsulated(id_, packet);
  }
  void set_receiver(FrameReceiver receiver) override {
    std::lock_guard lk(rx_mu_);
    receiver_ = std::move(receiver);
  }
  void set_tap(FrameTap tap) override {
    std::lock_guard lk(rx_mu_);
    tap_ = std::move(tap);
  }
  void deliver(std::span<const uint8_t> frame, const Offload& off) {
    std::lock_guard lk(rx_mu_);
    // A tap (a guest-side ring) takes plain frames only; the device resolves offload state.
    if (tap_ && off.plain() && tap_(frame)) {
      sw_->bump(Counter::kPortTapFrames);
      return;
    }
    if (receiver_) receiver_(frame, off);
  }

 private:
  const std::shared_ptr<Switch> sw_;  // the switch outlives its ports
  const uint64_t id_;
  const std::string name_;
  std::mutex rx_mu_;
  FrameReceiver receiver_;
  FrameTap tap_;
};

Switch::Switch(Options opts, std::shared_ptr<Backend> backend)
    : opts_(std::move(opts)), max_frame_(max_frame_for_mtu(opts_.mtu)), backend_(std::move(backend)) {}

Switch::~Switch() {
  if (backend_) backend_->stop();
}

Expected<std::shared_ptr<Switch>> Switch::create(Options opts, std::shared_ptr<Backend> backend) {
  if (opts.mtu < 68 || opts.mtu > GEARS_OVERLAY_MAX_MTU)
    return fail("overlay MTU " + std::to_string(opts.mtu) + " is outside 68.." +
                std::to_string(GEARS_OVERLAY_MAX_MTU));
  if (opts.max_entries == 0) return fail("overlay MAC table size must be at least 1");
  std::shared_ptr<Switch> sw(new Switch(std::move(opts), std::move(backend)));
  GEARS_TRY(sw->start());
  return sw;
}

Expected<void> Switch::start() {
  if (!backend_) return {};
  // The backend stops (and joins its thread) in ~Switch before `this` goes away.
  return backend_->start([this](const Endpoint& from, std::span<const uint8_t> p) { from_peer(from, p); },
                         [this](const Endpoint& peer, int err) { peer_error(peer, err); });
}

Switch::Time Switch::now() const { return opts_.clock ? opts_.clock() : std::chrono::steady_clock::now(); }

std::shared_ptr<Port> Switch::add_port(std::string name) {
  std::lock_guard lk(mu_);
  const uint64_t id = next_port_id_++;
  auto port = std::make_shared<LocalPort>(shared_from_this(), id, name);
  ports_[id] = {std::move(name), port};
  return port;
}

void Switch::remove_port(uint64_t port_id) {
  std::lock_guard lk(mu_);
  ports_.erase(port_id);
  std::erase_if(table_, [&](const auto& kv) { return kv.second.port == port_id; });
  changed();
}

Expected<void> Switch::add_route(const MacAddress& mac, const Endpoint& peer) {
  if (!valid_source(mac)) return fail("route for " + to_string(mac) + ": not a station address");
  if (peer.ip == 0 || peer.port == 0) return fail("route for " + to_string(mac) + ": peer " + to_string(peer) + " is not a usable endpoint");
  std::lock_guard lk(mu_);
  auto it = table_.find(mac);
  if (it == table_.end() && table_.size() >= opts_.max_entries) expire_locked(now());
  if (it == table_.end() && table_.size() >= opts_.max_entries)
    return fail("route for " + to_string(mac) + ": the MAC table is full");
  table_[mac] = Entry{true, 0, peer, now()};
  rebuild_flood_locked();
  changed();
  return {};
}

bool Switch::remove_route(const MacAddress& mac) {
  std::lock_guard lk(mu_);
  auto it = table_.find(mac);
  if (it == table_.end() || !it->second.is_static) return false;
  table_.erase(it);
  rebuild_flood_locked();
  changed();
  return true;
}

void Switch::add_peer(const Endpoint& peer) {
  std::lock_guard lk(mu_);
  peers_.insert(peer);
  rebuild_flood_locked();
}

bool Switch::remove_peer(const Endpoint& peer) {
  std::lock_guard lk(mu_);
  const bool had = peers_.erase(peer) != 0;
  rebuild_flood_locked();
  return had;
}

std::vector<Endpoint> Switch::peers() const {
  std::lock_guard lk(mu_);
  return flood_;
}

void Switch::rebuild_flood_locked() {
  std::set<Endpoint> all = peers_;
  for (const auto& [mac, e] : table_)
    if (e.is_static) all.insert(e.peer);
  flood_.assign(all.begin(), all.end());
}

std::vector<Switch::Route> Switch::routes() const {
  std::lock_guard lk(mu_);
  const Time t = now();
  std::vector<Route> out;
  for (const auto& [mac, e] : table_) {
    Route r;
    r.mac = mac;
    r.is_static = e.is_static;
    r.local = e.port != 0;
    if (r.local) {
      auto p = ports_.find(e.port);
      if (p != ports_.end()) r.port = p->second.first;
    }
    r.peer = e.peer;
    r.age = std::chrono::duration_cast<std::chrono::seconds>(t - e.seen);
    out.push_back(std::move(r));
  }
  std::sort(out.begin(), out.end(), [](const Route& a, const Route& b) { return a.mac < b.mac; });
  return out;
}

std::vector<MacAddress> Switch::remote_macs(size_t max) const {
  std::lock_guard lk(mu_);
  const Time t = now();
  std::vector<MacAddress> out;
  for (const bool statics : {true, false})
    for (const auto& [mac, e] : table_) {
      if (out.size() >= max) return out;
      if (e.port != 0 || e.is_static != statics) continue;
      if (!e.is_static && t - e.seen >= opts_.ageing) continue;
      out.push_back(mac);
    }
  return out;
}

void Switch::expire() {
  std::lock_guard lk(mu_);
  expire_locked(now());
}

void Switch::expire_locked(Time t) {
  const auto n = std::erase_if(table_, [&](const auto& kv) {
    return !kv.second.is_static && t - kv.second.seen >= opts_.ageing;
  });
  if (n) {
    bump(Counter::kAged, n);
    changed();
  }
  last_sweep_ = t;
}

void Switch::learn_locked(const MacAddress& src, uint64_t port_id, const Endpoint& peer, Time t) {
  auto it = table_.find(src);
  if (it != table_.end()) {
    Entry& e = it->second;
    if (e.is_static) return;
    const bool expired = t - e.seen >= opts_.ageing;
    // A peer does not take a MAC from a local port while that entry is fresh: a remote host
    // must not be able to divert a local guest's traffic by sending with its address.
    if (port_id == 0 && e.port != 0 && !expired) return;
    if (e.port != port_id || e.peer != peer) {
      bump(Counter::kLearned);
      changed();
    }
    e.port = port_id;
    e.peer = port_id ? Endpoint{} : peer;
    e.seen = t;
    return;
  }
  // A full table is swept at most once a second, so a flood of new sources costs little.
  if (table_.size() >= opts_.max_entries && t - last_sweep_ >= std::chrono::seconds(1)) expire_locked(t);
  if (table_.size() >= opts_.max_entries) {
    bump(Counter::kDropTableFull);
    return;
  }
  table_.emplace(src, Entry{false, port_id, port_id ? Endpoint{} : peer, t});
  bump(Counter::kLearned);
  changed();
}

const Switch::Entry* Switch::lookup_locked(const MacAddress& dst, Time t) {
  auto it = table_.find(dst);
  if (it == table_.end()) return nullptr;
  if (!it->second.is_static && t - it->second.seen >= opts_.ageing) {
    table_.erase(it);
    bump(Counter::kAged);
    changed();
    return nullptr;
  }
  return &it->second;
}

void Switch::all_ports_locked(uint64_t except, Targets& t) const {
  for (const auto& [id, p] : ports_) {
    if (id == except) continue;
    if (auto sp = p.second.lock()) t.ports.push_back(std::move(sp));
  }
}

Forwarded Switch::from_port_encapsulated(uint64_t port_id, std::span<const uint8_t> packet) {
  const Decapsulated d = decapsulate(packet, opts_.network, max_frame_);
  if (d.error != DecapError::kNone) {
    bump(Counter::kDropPortBadEncap);
    return Forwarded::kDropped;
  }
  bump(Counter::kPortEncapPackets);
  return from_port(port_id, d.frame, Offload{}, packet);
}

Forwarded Switch::from_port(uint64_t port_id, std::span<const uint8_t> frame, const Offload& off,
                            std::span<const uint8_t> encapsulated) {
  // A GSO frame may be up to 64 KiB; each of its segments must fit max_frame_ (checked below).
  const size_t limit = off.is_gso() ? kMaxGsoFrame : max_frame_;
  if (frame.size() < GEARS_OVERLAY_MIN_FRAME || frame.size() > limit) {
    bump(Counter::kDropBadFrame);
    return Forwarded::kDropped;
  }
  if (!off.plain() && check_offload(frame, off, max_frame_) != OffloadError::kNone) {
    bump(Counter::kDropBadOffload);
    return Forwarded::kDropped;
  }
  const MacAddress dst = MacAddress::from(frame.subspan(0, 6));
  const MacAddress src = MacAddress::from(frame.subspan(6, 6));
  if (!valid_source(src)) {
    bump(Counter::kDropBadFrame);
    return Forwarded::kDropped;
  }
  bump(Counter::kPortRxFrames);
  Targets t;
  {
    std::lock_guard lk(mu_);
    const Time now_t = now();
    learn_locked(src, port_id, {}, now_t);
    const Entry* e = dst.is_multicast() ? nullptr : lookup_locked(dst, now_t);
    if (!e) {
      bump(Counter::kFlooded);
      all_ports_locked(port_id, t);
      t.peers = flood_;
    } else if (e->port == port_id) {
      bump(Counter::kDropHairpin);
      return Forwarded::kOther;
    } else if (e->port != 0) {
      auto p = ports_.find(e->port);
      if (p != ports_.end())
        if (auto sp = p->second.second.lock()) t.ports.push_back(std::move(sp));
    } else {
      t.peers.push_back(e->peer);
    }
  }
  deliver(t, frame, off, encapsulated);
  return t.ports.empty() && t.peers.size() == 1 && backend_ ? Forwarded::kPeer : Forwarded::kOther;
}

void Switch::from_peer(const Endpoint& from, std::span<const uint8_t> packet) {
  const Decapsulated d = decapsulate(packet, opts_.network, max_frame_);
  if (d.error != DecapError::kNone) {
    bump(decap_counter(d.error));
    return;
  }
  const MacAddress dst = MacAddress::from(d.frame.subspan(0, 6));
  const MacAddress src = MacAddress::from(d.frame.subspan(6, 6));
  if (!valid_source(src)) {
    bump(Counter::kDropRemoteBadSource);
    return;
  }
  Targets t;
  {
    std::lock_guard lk(mu_);
    if (opts_.strict_peers && !std::binary_search(flood_.begin(), flood_.end(), from)) {
      bump(Counter::kDropRemoteUnknownPeer);
      return;
    }
    bump(Counter::kRemoteRxPackets);
    const Time now_t = now();
    learn_locked(src, 0, from, now_t);
    const Entry* e = dst.is_multicast() ? nullptr : lookup_locked(dst, now_t);
    if (!e) {
      bump(Counter::kFlooded);
      all_ports_locked(0, t);  // split horizon: never back out to peers
    } else if (e->port == 0) {
      bump(Counter::kDropRemoteToRemote);
      return;
    } else {
      auto p = ports_.find(e->port);
      if (p != ports_.end())
        if (auto sp = p->second.second.lock()) t.ports.push_back(std::move(sp));
    }
  }
  deliver(t, d.frame, Offload{});
}

void Switch::deliver(const Targets& t, std::span<const uint8_t> frame, const Offload& off,
                     std::span<const uint8_t> encapsulated) {
  for (const auto& p : t.ports) {
    p->deliver(frame, off);
    bump(Counter::kPortTxFrames);
  }
  if (t.peers.empty()) return;
  if (!backend_) {
    bump(Counter::kDropNoBackend, t.peers.size());
    return;
  }
  if (off.plain()) {
    send_to_peers(t.peers, frame, encapsulated);
  } else {
    // The wire carries plain frames of at most max_frame_ bytes: complete or segment first.
    const Resolution r = resolve(frame, off, Accepts{}, max_frame_,
                                 [&](std::span<const uint8_t> f, const Offload&) { send_to_peers(t.peers, f, {}); });
    if (r == Resolution::kSegmented) bump(Counter::kGsoSegmented);
    if (r == Resolution::kCsumCompleted) bump(Counter::kCsumCompleted);
  }
  backend_->flush();
}

void Switch::send_to_peers(const std::vector<Endpoint>& peers, std::span<const uint8_t> frame,
                           std::span<const uint8_t> encapsulated) {
  // One encapsulation buffer per thread: vCPUs and the backend thread send concurrently.
  thread_local std::vector<uint8_t> buf;
  std::span<const uint8_t> packet = encapsulated;
  if (packet.empty()) {
    buf.resize(kHeaderSize + frame.size());
    packet = std::span(buf.data(), encapsulate(opts_.network, frame, buf));
  }
  for (const auto& peer : peers) {
    switch (backend_->send(peer, packet)) {
      case SendStatus::kOk: bump(Counter::kRemoteTxPackets); break;
      case SendStatus::kUnreachable: bump(Counter::kDropSendUnreachable); break;
      case SendStatus::kNoBuffer: bump(Counter::kDropSendNoBuffer); break;
      case SendStatus::kError: bump(Counter::kDropSendError); break;
    }
  }
}

void Switch::peer_error(const Endpoint& peer, int) {
  // Forget what was learned behind a vanished peer, so its MACs flood (and may be relearned
  // elsewhere) instead of being sent into the void until they age out. Static routes stay.
  {
    std::lock_guard lk(mu_);
    std::erase_if(table_, [&](const auto& kv) {
      return !kv.second.is_static && kv.second.port == 0 && kv.second.peer == peer;
    });
    changed();
  }
  bump(Counter::kPeerUnreachable);  // after: whoever sees the count sees the table updated
}

std::vector<std::pair<std::string_view, uint64_t>> Switch::stats() const {
  std::vector<std::pair<std::string_view, uint64_t>> out;
  for (size_t i = 0; i < kCounterNames.size(); ++i)
    out.emplace_back(kCounterNames[i], counters_[i].load(std::memory_order_relaxed));
  return out;
}

}  // namespace gears::vmm::net
