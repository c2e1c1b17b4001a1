#include "virtio/net_rx.h"

#include <algorithm>

namespace gears::vmm::virtio {

void NetRx::attach(Virtqueue* vq, bool mergeable) {
  vq_ = vq;
  mergeable_ = mergeable;
}

void NetRx::detach() {
  vq_ = nullptr;
  held_.clear();  // the queue is going away with the driver: nothing to hand back
  held_bytes_ = 0;
  pending_.clear();  // frames for a driver that has gone; the next one starts afresh
  pending_bytes_ = 0;
  counters_.pending = 0;
}

void NetRx::deliver(const NetHdr& h, std::span<const uint8_t> frame) {
  if (pending_.empty() && place(h, frame) == Place::kDone) return;
  if (pending_.size() >= pending_max_ || pending_bytes_ + frame.size() > pending_bytes_max_) {
    ++counters_.dropped_full;
    return;
  }
  pending_.push_back({h, std::vector<uint8_t>(frame.begin(), frame.end())});
  pending_bytes_ += frame.size();
  counters_.pending = pending_.size();
}

void NetRx::drain() {
  while (!pending_.empty() && place(pending_.front().hdr, pending_.front().frame) == Place::kDone) {
    pending_bytes_ -= pending_.front().frame.size();
    pending_.pop_front();
  }
  counters_.pending = pending_.size();
}

void NetRx::signal() {
  if (vq_ && vq_->signal()) ++counters_.interrupts;
}

NetRx::Place NetRx::place(const NetHdr& h, std::span<const uint8_t> frame) {
  if (!vq_) return Place::kNoBuffers;
  return mergeable_ ? place_merged(h, frame) : place_one(h, frame);
}

NetRx::Place NetRx::place_one(const NetHdr& h, std::span<const uint8_t> frame) {
  auto c = vq_->pop();
  if (!c) return Place::kNoBuffers;
  if (c->writable_bytes() < sizeof(NetHdr) + frame.size()) {
    ++counters_.dropped_small;
    vq_->push(c->head, 0);
    return Place::kDone;
  }
  write(h, frame, std::span(&*c, 1));
  return Place::kDone;
}

NetRx::Place NetRx::place_merged(const NetHdr& h, std::span<const uint8_t> frame) {
  const uint64_t need = sizeof(NetHdr) + frame.size();
  // A frame's first buffer must hold the header; one held behind the last frame may not.
  while (!held_.empty() && held_.front().writable_bytes() < sizeof(NetHdr)) {
    held_bytes_ -= held_.front().writable_bytes();
    vq_->push(held_.front().head, 0);
    held_.erase(held_.begin());
  }
  while (held_bytes_ < need) {
    auto c = vq_->pop();
    if (!c) break;
    const uint64_t cap = c->writable_bytes();
    if (cap == 0 || (held_.empty() && cap < sizeof(NetHdr))) {
      vq_->push(c->head, 0);  // cannot carry any part of a frame (or not its header)
      continue;
    }
    held_.push_back(std::move(*c));
    held_bytes_ += cap;
  }
  if (held_bytes_ < need) {
    // The driver may still post more, unless every entry of its ring is already held here.
    if (held_.size() < vq_->size()) return Place::kNoBuffers;
    ++counters_.dropped_small;
    return Place::kDone;
  }
  size_t n = 0;
  for (uint64_t cap = 0; cap < need; ++n) cap += held_[n].writable_bytes();
  write(h, frame, std::span(held_.data(), n));
  for (size_t i = 0; i < n; ++i) held_bytes_ -= held_[i].writable_bytes();
  held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
  return Place::kDone;
}

void NetRx::write(NetHdr h, std::span<const uint8_t> frame, std::span<const Chain> chains) {
  GuestMemory& mem = vq_->memory();
  h.num_buffers = static_cast<uint16_t>(chains.size());
  const std::span<const uint8_t> hdr(reinterpret_cast<const uint8_t*>(&h), sizeof h);
  size_t done = 0;
  for (size_t i = 0; i < chains.size(); ++i) {
    const Chain& c = chains[i];
    uint64_t w = 0;
    if (i == 0) w = copy_to_segments(mem, c.writable, 0, hdr);
    const size_t take = static_cast<size_t>(std::min<uint64_t>(c.writable_bytes() - w, frame.size() - done));
    w += copy_to_segments(mem, c.writable, w, frame.subspan(done, take));
    done += take;
    vq_->push(c.head, static_cast<uint32_t>(w));
  }
  ++counters_.frames;
  counters_.bytes += frame.size();
  if (chains.size() > 1) ++counters_.merged;
}

}  // namespace gears::vmm::virtio
