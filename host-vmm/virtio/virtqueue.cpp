#include "virtio/virtqueue.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <string>

#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

// Split-ring layout (spec 2.7): avail = flags, idx, ring[size], used_event;
// used = flags, idx, ring[size] of {u32 id, u32 len}, avail_event. x86 is little-endian like
// virtio 1.x, so the rings are read as native integers.
constexpr uint64_t desc_bytes(uint64_t n) { return 16 * n; }
constexpr uint64_t avail_bytes(uint64_t n) { return 6 + 2 * n; }
constexpr uint64_t used_bytes(uint64_t n) { return 6 + 8 * n; }

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Ring indices are shared with vCPUs that run concurrently; these are the points where the
// ordering matters, so they are atomic accesses (the addresses are aligned by validation).
uint16_t atomic_load16(const uint8_t* p) {
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(p), __ATOMIC_ACQUIRE);
}
void atomic_store16(uint8_t* p, uint16_t v) {
  __atomic_store_n(reinterpret_cast<uint16_t*>(p), v, __ATOMIC_RELEASE);
}

}  // namespace

Expected<void> validate_layout(const GuestMemory& mem, const QueueLayout& l, uint16_t max_size) {
  if (l.size == 0) return fail("virtqueue size is zero");
  if (l.size > max_size) {
    return fail("virtqueue size " + std::to_string(l.size) + " exceeds the maximum " +
                std::to_string(max_size));
  }
  if ((l.size & (l.size - 1)) != 0)
    return fail("virtqueue size " + std::to_string(l.size) + " is not a power of two");
  if (l.desc % 16 != 0) return fail("descriptor table " + hex(l.desc) + " is not 16-byte aligned");
  if (l.avail % 2 != 0) return fail("driver area " + hex(l.avail) + " is not 2-byte aligned");
  if (l.used % 4 != 0) return fail("device area " + hex(l.used) + " is not 4-byte aligned");
  if (!mem.contains(l.desc, desc_bytes(l.size)))
    return fail("descriptor table " + hex(l.desc) + " is outside guest RAM");
  if (!mem.contains(l.avail, avail_bytes(l.size)))
    return fail("driver area " + hex(l.avail) + " is outside guest RAM");
  if (!mem.contains(l.used, used_bytes(l.size)))
    return fail("device area " + hex(l.used) + " is outside guest RAM");
  return {};
}

uint64_t Chain::readable_bytes() const {
  uint64_t n = 0;
  for (const auto& s : readable) n += s.len;
  return n;
}

uint64_t Chain::writable_bytes() const {
  uint64_t n = 0;
  for (const auto& s : writable) n += s.len;
  return n;
}

Expected<Virtqueue> Virtqueue::create(GuestMemory& mem, uint16_t index, const QueueLayout& layout,
                                      uint16_t max_size, Options opts, QueueEvents* events) {
  GEARS_TRY(validate_layout(mem, layout, max_size));
  auto d = mem.span(layout.desc, desc_bytes(layout.size));
  auto a = mem.span(layout.avail, avail_bytes(layout.size));
  auto u = mem.span(layout.used, used_bytes(layout.size));
  if (!d || !a || !u) return fail("virtqueue rings are outside guest RAM");
  Virtqueue q;
  q.mem_ = &mem;
  q.events_ = events;
  q.index_ = index;
  q.layout_ = layout;
  q.opts_ = opts;
  q.desc_ = d->data();
  q.avail_ = a->data();
  q.used_ = u->data();
  return q;
}

uint16_t Virtqueue::load_avail_idx() const { return atomic_load16(avail_ + 2); }
uint16_t Virtqueue::load_avail_flags() const { return atomic_load16(avail_); }
uint16_t Virtqueue::load_used_event() const { return atomic_load16(avail_ + 4 + 2 * layout_.size); }
void Virtqueue::store_avail_event(uint16_t v) { atomic_store16(used_ + 4 + 8 * layout_.size, v); }

void Virtqueue::mark_broken() {
  if (broken_) return;
  broken_ = true;
  if (events_) events_->needs_reset();
}

std::optional<Chain> Virtqueue::pop() {
  const uint16_t n = layout_.size;
  while (!broken_) {
    if (opts_.event_idx) {
      // Ask to be notified when the driver makes entry last_avail_ available, and make that
      // store visible before we look at avail->idx, or a notification could be lost.
      store_avail_event(last_avail_);
      std::atomic_thread_fence(std::memory_order_seq_cst);
    }
    const uint16_t avail_idx = load_avail_idx();  // acquire: ring entries are read after it
    const uint16_t pending = static_cast<uint16_t>(avail_idx - last_avail_);
    if (pending == 0) return std::nullopt;
    if (pending > n) {  // the driver claims more entries than the ring holds
      mark_broken();
      return std::nullopt;
    }
    uint16_t head;
    std::memcpy(&head, avail_ + 4 + 2 * (last_avail_ % n), sizeof head);
    ++last_avail_;
    if (head >= n) {  // cannot even be handed back: the used ring would name a bogus id
      mark_broken();
      return std::nullopt;
    }
    Chain chain;
    chain.head = head;
    if (walk(head, chain) == Walk::kOk) return chain;
    if (events_) events_->malformed_chain(index_);
    push(head, 0);  // give the descriptors back so a confused driver does not leak them
  }
  return std::nullopt;
}

// Follows a chain from `head`. Each descriptor is copied out once, then checked: buffers must lie
// in guest RAM, `next` must stay inside its table, readable buffers must precede writable ones,
// an indirect table may appear once (not nested, not combined with NEXT, only if negotiated).
// A walk visits at most `size` descriptors of the ring, then at most the indirect table's
// entries (itself at most `size`), which bounds the work and ends any loop.
Virtqueue::Walk Virtqueue::walk(uint16_t head, Chain& out) {
  const uint16_t n = layout_.size;
  uint32_t table_size = n;
  uint64_t indirect_gpa = 0;
  bool in_indirect = false;
  uint32_t idx = head;
  uint32_t count = 0;
  for (;;) {
    if (++count > table_size) return Walk::kMalformed;  // loop, or longer than the queue
    RawDesc d;
    if (!in_indirect) {
      std::memcpy(&d, desc_ + 16 * idx, sizeof d);
    } else {
      auto r = mem_->read_obj<RawDesc>(indirect_gpa + 16 * uint64_t{idx});
      if (!r) return Walk::kMalformed;
      d = *r;
    }
    if (d.flags & kDescFIndirect) {
      if (!opts_.indirect || in_indirect || (d.flags & kDescFNext)) return Walk::kMalformed;
      if (d.len == 0 || d.len % 16 != 0 || d.len / 16 > n) return Walk::kMalformed;
      if (!mem_->contains(d.addr, d.len)) return Walk::kMalformed;
      in_indirect = true;
      indirect_gpa = d.addr;
      table_size = d.len / 16;
      idx = 0;
      count = 0;
      continue;
    }
    if (d.len != 0) {
      if (!mem_->contains(d.addr, d.len)) return Walk::kMalformed;
      if (d.flags & kDescFWrite) {
        out.writable.push_back({d.addr, d.len});
      } else {
        if (!out.writable.empty()) return Walk::kMalformed;
        out.readable.push_back({d.addr, d.len});
      }
    }
    if (!(d.flags & kDescFNext)) return Walk::kOk;
    idx = d.next;
    if (idx >= table_size) return Walk::kMalformed;
  }
}

void Virtqueue::disable_notifications() {
  if (!notify_) return;
  notify_ = false;
  // With EVENT_IDX nothing is written: avail_event stays at an entry the driver has passed, so
  // vring_need_event() is false for its next additions.
  if (!opts_.event_idx) atomic_store16(used_, kUsedFNoNotify);
}

bool Virtqueue::enable_notifications() {
  notify_ = true;
  if (opts_.event_idx) {
    store_avail_event(last_avail_);
  } else {
    atomic_store16(used_, 0);
  }
  // The re-arm must be visible before we look at avail->idx (the driver does the reverse).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return !broken_ && load_avail_idx() != last_avail_;
}

void Virtqueue::push(uint16_t head, uint32_t written) {
  const uint32_t elem[2] = {head, written};
  std::memcpy(used_ + 4 + 8 * (used_idx_ % layout_.size), elem, sizeof elem);
  ++used_idx_;
  atomic_store16(used_ + 2, used_idx_);  // release: the element is visible before the index
  pending_signal_ = true;
}

bool Virtqueue::signal() {
  if (!pending_signal_ || !events_) return false;
  pending_signal_ = false;
  // The used->idx store must be visible before we read the driver's suppression fields, or the
  // driver could re-enable interrupts in between and wait forever (spec 2.7.7.2).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool need;
  if (opts_.event_idx) {
    // vring_need_event(): notify if used_event lies in [signalled_, used_idx_).
    const uint16_t ev = load_used_event();
    need = static_cast<uint16_t>(used_idx_ - ev - 1) < static_cast<uint16_t>(used_idx_ - signalled_);
  } else {
    need = !(load_avail_flags() & kAvailFNoInterrupt);
  }
  signalled_ = used_idx_;
  if (need) events_->used_buffer(index_);
  return need;
}

size_t copy_from_segments(const GuestMemory& mem, const std::vector<Segment>& segs,
                          uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  for (const auto& s : segs) {
    if (done == out.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(s.len - offset, out.size() - done);
    if (!mem.read(s.gpa + offset, out.subspan(done, take))) break;
    done += take;
    offset = 0;
  }
  return done;
}

size_t copy_to_segments(GuestMemory& mem, const std::vector<Segment>& segs, uint64_t offset,
                        std::span<const uint8_t> in) {
  size_t done = 0;
  for (const auto& s : segs) {
    if (done == in.size()) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(s.len - offset, in.size() - done);
    if (!mem.write(s.gpa + offset, in.subspan(done, take))) break;
    done += take;
    offset = 0;
  }
  return done;
}

Expected<std::vector<iovec>> segments_iov(GuestMemory& mem, const std::vector<Segment>& segs,
                                          uint64_t offset, uint64_t len) {
  std::vector<iovec> iov;
  for (const auto& s : segs) {
    if (len == 0) break;
    if (offset >= s.len) {
      offset -= s.len;
      continue;
    }
    const uint64_t take = std::min<uint64_t>(s.len - offset, len);
    auto host = mem.span(s.gpa + offset, take);
    if (!host) return Unexpected<Error>{host.error()};
    iov.push_back({host->data(), take});
    len -= take;
    offset = 0;
  }
  if (len != 0) return fail("request runs past the end of its buffers");
  return iov;
}

}  // namespace gears::vmm::virtio
