// overlay-accel, VMM side of the shared area (ovl_shared.h): publishes the control plane's view
// to the guest and consumes the guest's TX ring into the overlay's host path. Header-only so
// that the service's VMM half, a host unit test (tests/unit/net/overlay_accel_test.cpp, a hostile
// guest) and a fuzz target (tests/fuzz/overlay_ring_fuzz.cpp) use the same code.
//
// Threads: poll() runs on the service's poller, kick() on a vCPU (the guest's hypercall when
// the ring is full); one mutex makes them take turns as the TX ring's single consumer.
// rx_tap() runs on whichever thread delivers a frame to the NIC (the RX ring's single producer,
// serialized by the port's receive lock and its own), rx_stop() on a vCPU. The area
// is guest memory written concurrently by the guest: indices and lengths are read once, checked,
// and each packet is copied out before the overlay sees it.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "gears/abi/overlay.h"
#include "gears/vmm/overlay.h"
#include "ovl_shared.h"

namespace ovl {

class VmmSide {
 public:
  // How long the poller spins on an empty ring before it sleeps (and the guest must kick):
  // twice the recent gap between the guest's bursts, within these bounds. A steady stream
  // then never finds the poller asleep (no exit per packet); an idle guest costs nothing.
  static constexpr auto kMinSpin = std::chrono::microseconds(50);
  static constexpr auto kMaxSpin = std::chrono::microseconds(2000);
  static constexpr std::uint32_t kBudget = 64;  // packets per round

  struct Counters {
    std::atomic<std::uint64_t> tx_packets{0}, tx_sent{0}, tx_switched{0}, tx_dropped{0}, tx_bad_slot{0},
        tx_bad_index{0}, tx_gso{0}, kicks{0}, wakes{0}, routes_published{0}, attaches{0}, rx_ring{0}, rx_nic{0}, rx_full{0},
        rx_stops{0};
  };

  // Takes the area the guest announced: checks its identity and publishes the NIC and the routes.
  // 0 or a negative errno (-EINVAL: not an area of this layout; -EBUSY: one is attached).
  int attach(std::span<std::uint8_t> area, gears::vmm::OverlayNic* nic) {
    std::lock_guard lk(mu_);
    if (!area_.empty()) return -16;  // EBUSY
    if (!nic || area.size() < OVL_AREA_SIZE) return -22;
    auto* c = reinterpret_cast<ovl_ctrl*>(area.data());
    if (load(c->magic) != OVL_MAGIC || load(c->area_size) != OVL_AREA_SIZE || load(c->tx_slots) != OVL_TX_SLOTS ||
        load(c->rx_slots) != OVL_RX_SLOTS)
      return -22;
    area_ = area.first(OVL_AREA_SIZE);
    nic_ = nic;
    const gears::vmm::OverlayNicInfo info = nic->info();
    std::memcpy(c->mac, info.mac.data(), 6);
    c->mtu = static_cast<std::uint16_t>(info.mtu);
    c->network = info.network;
    // The guest's consumer index of the TX ring is ours: start where the guest is.
    cons_ = load(rings()->tx.prod);
    store(rings()->tx.cons, cons_);
    {
      std::lock_guard rx(rx_mu_);
      rx_area_ = area_;
      rx_prod_ = load(rings()->rx.cons);  // the guest's receive ring starts empty, where it is
      store(rings()->rx.prod, rx_prod_);
      store(c->guest_rx_polling, 0);
    }
    published_ = 0;
    publish_routes_locked();
    store(c->vmm_sleeping, 0);
    store(c->attached, 1);
    last_work_ = std::chrono::steady_clock::now();
    counters_.attaches++;
    return 0;
  }

  // Sends what the guest left in the ring, then forgets the area (the guest frees it next).
  void detach() {
    std::lock_guard lk(mu_);
    if (area_.empty()) return;
    drain_locked(OVL_TX_SLOTS);
    {
      std::lock_guard rx(rx_mu_);  // no receive tap is inside the area after this
      store(ctrl()->guest_rx_polling, 0);
      rx_area_ = {};
    }
    store(ctrl()->attached, 0);
    area_ = {};
    nic_ = nullptr;
  }

  // The NIC's receive tap (OverlayNic::set_rx_tap; the switch's delivering thread): while the
  // guest polls its receive ring, a frame goes there (no interrupt, no exit); otherwise, or
  // when the ring is full, the NIC receives it as before (false).
  bool rx_tap(std::span<const std::uint8_t> frame) {
    std::lock_guard lk(rx_mu_);
    if (rx_area_.empty() || frame.size() > OVL_SLOT_DATA) return false;
    auto* c = reinterpret_cast<ovl_ctrl*>(rx_area_.data());
    auto* r = reinterpret_cast<ovl_rings*>(rx_area_.data() + OVL_RINGS_OFF);
    if (!load_acquire(c->guest_rx_polling)) {
      counters_.rx_nic++;
      return false;
    }
    // The guest's consumer index is untrusted: anything but 0..SLOTS behind us reads as full.
    if (rx_prod_ - load_acquire(r->rx.cons) >= OVL_RX_SLOTS) {
      counters_.rx_full++;
      return false;
    }
    auto* s = reinterpret_cast<ovl_slot*>(rx_area_.data() + OVL_RX_OFF + std::size_t{rx_prod_ % OVL_RX_SLOTS} * OVL_SLOT_SIZE);
    std::memcpy(s->data, frame.data(), frame.size());
    store(s->len, static_cast<std::uint32_t>(frame.size()));
    ++rx_prod_;
    store(r->rx.prod, rx_prod_);
    counters_.rx_ring++;
    return true;
  }

  // The guest's receive poller goes idle (its hypercall): from now on frames take the NIC.
  // Returns the frames still in the ring (the guest keeps polling while there are any): the
  // flag is cleared under the tap's lock, so no frame can land in the ring unseen.
  std::int64_t rx_stop() {
    std::lock_guard lk(rx_mu_);
    if (rx_area_.empty()) return 0;
    auto* c = reinterpret_cast<ovl_ctrl*>(rx_area_.data());
    auto* r = reinterpret_cast<ovl_rings*>(rx_area_.data() + OVL_RINGS_OFF);
    store(c->guest_rx_polling, 0);
    counters_.rx_stops++;
    const std::uint32_t pending = rx_prod_ - load_acquire(r->rx.cons);
    return pending > OVL_RX_SLOTS ? 0 : pending;
  }

  bool attached() const {
    std::lock_guard lk(mu_);
    return !area_.empty();
  }

  // One round of the poller: true to be called again at once, false to sleep (the guest then
  // kicks after its next push).
  bool poll() {
    std::lock_guard lk(mu_);
    if (area_.empty()) return false;
    const auto now = std::chrono::steady_clock::now();
    if (load(ctrl()->vmm_sleeping)) store(ctrl()->vmm_sleeping, 0);
    publish_routes_locked();
    if (drain_locked(kBudget) > 0) {
      note_work_locked(now);
      return true;
    }
    if (now - last_work_ < spin_) return true;
    // Going to sleep: say so, then look once more, so a push that raced with the flag is not
    // left waiting for the idle period.
    store(ctrl()->vmm_sleeping, 1);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (load_acquire(rings()->tx.prod) != cons_) {
      store(ctrl()->vmm_sleeping, 0);
      return true;
    }
    return false;
  }

  // The guest's hypercall after a batch found the poller asleep: the caller wakes the poller
  // (the vCPU returns at once; the poller's thread sends, as a NIC's transmit thread would).
  void wake() { counters_.wakes++; }

  // The guest's hypercall when the ring is full: send now, on the vCPU (waiting for a poller
  // round in progress: the guest counts on a drained ring when this returns).
  void kick() {
    counters_.kicks++;
    std::lock_guard lk(mu_);
    if (area_.empty()) return;
    drain_locked(OVL_TX_SLOTS);
    note_work_locked(std::chrono::steady_clock::now());
  }

  std::vector<std::pair<std::string, std::uint64_t>> counters() const {
    std::vector<std::pair<std::string, std::uint64_t>> out = {
        {"tx_packets", counters_.tx_packets},   {"tx_sent", counters_.tx_sent},
        {"tx_switched", counters_.tx_switched}, {"tx_dropped", counters_.tx_dropped},
        {"tx_bad_slot", counters_.tx_bad_slot}, {"tx_bad_index", counters_.tx_bad_index},
        {"tx_gso", counters_.tx_gso},           {"wakes", counters_.wakes},
        {"kicks", counters_.kicks},             {"routes_published", counters_.routes_published},
        {"attaches", counters_.attaches},       {"rx_ring", counters_.rx_ring},
        {"rx_nic", counters_.rx_nic},           {"rx_full", counters_.rx_full},
        {"rx_stops", counters_.rx_stops}};
    std::lock_guard lk(mu_);
    out.emplace_back("spin_us", static_cast<std::uint64_t>(spin_.count()));
    out.emplace_back("attached", area_.empty() ? 0 : 1);
    if (!area_.empty()) {
      static constexpr const char* kGuest[OVL_G_COUNT] = {"guest_tx_ring", "guest_tx_fallback", "guest_tx_full",
                                                          "guest_tx_kicks", "guest_rx_ring", "guest_rx_dropped",
                                                          "guest_rx_sleeps", "guest_tx_gso"};
      for (unsigned i = 0; i < OVL_G_COUNT; ++i) out.emplace_back(kGuest[i], load(ctrl()->counters[i]));
      out.emplace_back("routes", load(ctrl()->nroutes));
    }
    return out;
  }

 private:
  template <class T>
  static T load(const T& v) {
    return std::atomic_ref<T>(const_cast<T&>(v)).load(std::memory_order_relaxed);
  }
  template <class T>
  static T load_acquire(const T& v) {
    return std::atomic_ref<T>(const_cast<T&>(v)).load(std::memory_order_acquire);
  }
  template <class T>
  static void store(T& v, std::type_identity_t<T> x) {
    std::atomic_ref<T>(v).store(x, std::memory_order_release);
  }
  ovl_ctrl* ctrl() const { return reinterpret_cast<ovl_ctrl*>(area_.data()); }
  ovl_rings* rings() const { return reinterpret_cast<ovl_rings*>(area_.data() + OVL_RINGS_OFF); }
  ovl_slot* tx_slot(std::uint32_t i) const {
    return reinterpret_cast<ovl_slot*>(area_.data() + OVL_TX_OFF + std::size_t{i % OVL_TX_SLOTS} * OVL_SLOT_SIZE);
  }

  // Work after a gap: the spin before sleeping follows the gaps (an average over ~8 bursts).
  void note_work_locked(std::chrono::steady_clock::time_point now) {
    const auto gap = std::chrono::duration_cast<std::chrono::microseconds>(now - last_work_);
    last_work_ = now;
    if (gap > 4 * kMaxSpin) return;  // a pause, not the stream's rhythm
    gap_us_ = (7 * gap_us_ + static_cast<std::uint64_t>(gap.count())) / 8;
    spin_ = std::clamp(std::chrono::microseconds(2 * gap_us_), std::chrono::microseconds(kMinSpin),
                       std::chrono::microseconds(kMaxSpin));
  }

  // Rewrites the guest's route table when the switch's changed (seqlock: odd while writing).
  void publish_routes_locked() {
    const std::uint64_t gen = nic_->routes_generation();
    if (gen == published_) return;
    published_ = gen;
    const auto macs = nic_->remote_macs(OVL_MAX_ROUTES);
    ovl_ctrl* c = ctrl();
    const std::uint32_t seq = seq_ + 1;
    store(c->routes_seq, seq);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    for (std::size_t i = 0; i < macs.size(); ++i) std::memcpy(c->routes[i], macs[i].data(), 6);
    store(c->nroutes, static_cast<std::uint32_t>(macs.size()));
    std::atomic_thread_fence(std::memory_order_seq_cst);
    seq_ = seq + 1;
    store(c->routes_seq, seq_);
    counters_.routes_published++;
  }

  // Up to `budget` slots' worth of entries from the TX ring into the overlay (at least one
  // entry when there is one). Returns how many slots were consumed.
  std::uint32_t drain_locked(std::uint32_t budget) {
    const std::uint32_t prod = load_acquire(rings()->tx.prod);
    const std::uint32_t avail = prod - cons_;
    if (avail > OVL_TX_SLOTS) {
      // A guest that claims more than the ring holds: skip to its index, lose nothing of ours.
      skip_to_locked(prod);
      return 0;
    }
    std::uint32_t used = 0;
    while (used < avail && used < budget) {
      const ovl_slot* s = tx_slot(cons_ + used);
      // Read the entry's description once: the guest may rewrite the slot meanwhile.
      ovl_slot head;
      std::memcpy(&head, s, OVL_SLOT_HDR);
      const std::uint32_t len = head.len;
      counters_.tx_packets++;
      if (len > OVL_TX_MAX_FRAME) {  // longer than any frame: one bad slot
        counters_.tx_bad_slot++;
        used += 1;
        continue;
      }
      const std::uint32_t slots = ovl_tx_entry_slots(len);
      if (slots > avail - used) {
        // Running past what the guest published: its index and lengths disagree; skip to it.
        counters_.tx_bad_slot++;
        used = avail;
        break;
      }
      copy_entry_locked(cons_ + used, len);
      send_locked(head, std::span<const std::uint8_t>(buf_.data(), len));
      used += slots;
    }
    if (used) {
      nic_->flush();
      cons_ += used;
      store(rings()->tx.cons, cons_);
    }
    return used;
  }

  void skip_to_locked(std::uint32_t prod) {
    counters_.tx_bad_index++;
    nic_->flush();
    cons_ = prod;
    store(rings()->tx.cons, cons_);
  }

  // The entry's data, slot by slot, into buf_ (wrapping at the ring's end).
  void copy_entry_locked(std::uint32_t first, std::uint32_t len) {
    for (std::uint32_t off = 0, i = first; off < len; off += OVL_SLOT_DATA, ++i)
      std::memcpy(buf_.data() + off, tx_slot(i)->data, std::min(len - off, OVL_SLOT_DATA));
  }

  void send_locked(const ovl_slot& head, std::span<const std::uint8_t> data) {
    gears::vmm::OverlaySend r;
    if (head.flags == OVL_TX_ENCAP) {
      if (data.size() < GEARS_OVERLAY_HDR_SIZE + GEARS_OVERLAY_MIN_FRAME || data.size() > OVL_SLOT_DATA) {
        counters_.tx_bad_slot++;
        return;
      }
      r = nic_->send_encapsulated(data);
    } else {
      gears::vmm::OverlayOffload off;
      if (head.flags & ~OVL_TX_CSUM) {
        counters_.tx_bad_slot++;
        return;
      }
      off.needs_csum = head.flags & OVL_TX_CSUM;
      off.csum_start = head.csum_start;
      off.csum_offset = head.csum_offset;
      switch (head.gso_type & ~OVL_GSO_ECN) {
        case OVL_GSO_NONE: break;
        case OVL_GSO_TCPV4: off.gso = gears::vmm::OverlayOffload::Gso::tcpv4; break;
        case OVL_GSO_TCPV6: off.gso = gears::vmm::OverlayOffload::Gso::tcpv6; break;
        default: counters_.tx_bad_slot++; return;
      }
      off.gso_ecn = head.gso_type & OVL_GSO_ECN;
      off.gso_size = head.gso_size;
      off.hdr_len = head.hdr_len;
      if (off.gso != gears::vmm::OverlayOffload::Gso::none) counters_.tx_gso++;
      r = nic_->send_frame(data, off);  // the switch checks the fields against the frame
    }
    switch (r) {
      case gears::vmm::OverlaySend::sent: counters_.tx_sent++; break;
      case gears::vmm::OverlaySend::switched: counters_.tx_switched++; break;
      case gears::vmm::OverlaySend::dropped: counters_.tx_dropped++; break;
    }
  }

  mutable std::mutex mu_;
  std::span<std::uint8_t> area_;
  // The receive side has its own lock: the tap runs on the switch's delivering thread while
  // the poller may be sending (through the switch, to other ports) under mu_.
  std::mutex rx_mu_;
  std::span<std::uint8_t> rx_area_;
  std::uint32_t rx_prod_ = 0;
  gears::vmm::OverlayNic* nic_ = nullptr;
  std::uint32_t cons_ = 0;
  std::uint32_t seq_ = 0;
  std::uint64_t published_ = 0;
  std::chrono::steady_clock::time_point last_work_{};
  std::uint64_t gap_us_ = 100;
  std::chrono::microseconds spin_{200};
  std::vector<std::uint8_t> buf_ = std::vector<std::uint8_t>(OVL_TX_MAX_FRAME);
  Counters counters_;
};

}  // namespace ovl
