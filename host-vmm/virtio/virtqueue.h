// A split virtqueue (virtio 1.x, spec 2.7) seen from the device side.
//
// The three rings live in guest RAM and are written by an untrusted driver. Everything is read
// through GuestMemory: the ring addresses are validated once when the queue is set up (size,
// alignment, "inside one RAM region"), every descriptor is copied out before it is looked at
// (the guest may change it under us), and every buffer address/length is checked against RAM
// before a device may touch it. A malformed chain is counted, handed back to the driver as used
// with length 0 and skipped; a corrupt avail ring (head index out of range, index jumping by more
// than the queue size) marks the queue broken and asks the transport for DEVICE_NEEDS_RESET.
//
// The class is generic over devices: pop() a chain, move bytes with the helpers below,
// push() it back, then signal() once per batch (net can complete many frames per interrupt).
// A Virtqueue is not thread-safe: its device serializes access (one lock per device or queue).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "core/guest_memory.h"
#include "gears/expected.h"

namespace gears::vmm::virtio {

// What a queue (and its device) may ask of the transport. Thread-safe; called on vCPU threads
// and device threads.
class QueueEvents {
 public:
  virtual ~QueueEvents() = default;
  // A used-buffer notification for `queue` is due (the interrupt, after event-index checks).
  virtual void used_buffer(uint16_t queue) = 0;
  // The device's configuration space changed (bumps ConfigGeneration, config interrupt).
  virtual void config_changed() = 0;
  // The device hit an error it cannot recover from without a reset (DEVICE_NEEDS_RESET).
  virtual void needs_reset() = 0;
  // A malformed chain was dropped (statistics; guests must not be able to spam a log).
  virtual void malformed_chain(uint16_t queue) = 0;
};

// Where the driver put the rings, as written into the transport's queue registers.
struct QueueLayout {
  uint16_t size = 0;  // number of entries, a power of two
  uint64_t desc = 0;  // descriptor table, 16-byte aligned
  uint64_t avail = 0; // "driver area", 2-byte aligned
  uint64_t used = 0;  // "device area", 4-byte aligned
};

// Checks a layout against the spec and guest RAM; the error says which rule it broke.
Expected<void> validate_layout(const GuestMemory& mem, const QueueLayout& layout, uint16_t max_size);

// One buffer of a chain. Always inside guest RAM (checked when the chain was popped).
struct Segment {
  uint64_t gpa = 0;
  uint32_t len = 0;
};

// A validated descriptor chain: the device-readable segments, then the device-writable ones
// (the spec requires that order; a chain that mixes them is malformed).
struct Chain {
  uint16_t head = 0;
  std::vector<Segment> readable;
  std::vector<Segment> writable;

  uint64_t readable_bytes() const;
  uint64_t writable_bytes() const;
};

class Virtqueue {
 public:
  struct Options {
    bool event_idx = false;  // VIRTIO_F_EVENT_IDX negotiated
    bool indirect = false;   // VIRTIO_F_INDIRECT_DESC negotiated
  };

  // Fails when the layout is invalid (see validate_layout). `events` must outlive the queue.
  static Expected<Virtqueue> create(GuestMemory& mem, uint16_t index, const QueueLayout& layout,
                                    uint16_t max_size, Options opts, QueueEvents* events);

  // Move-only: a copy would keep its own ring indices and drift from the original.
  Virtqueue(Virtqueue&&) noexcept = default;
  Virtqueue& operator=(Virtqueue&&) noexcept = default;
  Virtqueue(const Virtqueue&) = delete;
  Virtqueue& operator=(const Virtqueue&) = delete;

  uint16_t index() const { return index_; }
  uint16_t size() const { return layout_.size; }
  bool broken() const { return broken_; }

  // The next chain the driver made available; nullopt when there is none (or the queue is
  // broken). Malformed chains are completed with length 0, reported and skipped.
  std::optional<Chain> pop();

  // Puts `head` into the used ring, `written` = bytes the device wrote into the chain.
  void push(uint16_t head, uint32_t written);

  // Notification suppression for a device that works off the vCPU (spec 2.7.7.2, 2.7.10): while
  // disabled the driver need not notify for new buffers (EVENT_IDX: avail_event stays behind;
  // otherwise VIRTQ_USED_F_NO_NOTIFY). enable_notifications() re-arms and returns true when
  // buffers arrived meanwhile: the caller must pop() again, or it could sleep with work pending.
  void disable_notifications();
  bool enable_notifications();

  // Raises the used-buffer notification if the driver wants one for what was pushed since the
  // last signal() (VIRTIO_F_EVENT_IDX's used_event, or VIRTQ_AVAIL_F_NO_INTERRUPT). True when
  // it did (for statistics).
  bool signal();

  GuestMemory& memory() { return *mem_; }

 private:
  Virtqueue() = default;

  struct RawDesc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
  };
  static_assert(sizeof(RawDesc) == 16);

  enum class Walk { kOk, kMalformed };
  Walk walk(uint16_t head, Chain& out);
  void mark_broken();

  uint16_t load_avail_idx() const;
  uint16_t load_avail_flags() const;
  uint16_t load_used_event() const;
  void store_avail_event(uint16_t v);

  GuestMemory* mem_ = nullptr;
  QueueEvents* events_ = nullptr;
  uint16_t index_ = 0;
  QueueLayout layout_{};
  Options opts_{};
  // Host views of the three rings; they stay valid for the life of GuestMemory's mapping.
  uint8_t* desc_ = nullptr;
  uint8_t* avail_ = nullptr;
  uint8_t* used_ = nullptr;

  uint16_t last_avail_ = 0;   // next avail-ring slot to consume
  uint16_t used_idx_ = 0;     // our copy of used->idx
  uint16_t signalled_ = 0;    // used_idx_ at the last signal()
  bool pending_signal_ = false;
  bool notify_ = true;        // the driver is asked to notify (see disable_notifications)
  bool broken_ = false;
};

// Byte-stream views of a chain's segments: the device must not assume any particular split of
// headers and data across descriptors (spec 2.6.4), so devices address a chain by offset.

// Copies up to out.size() bytes starting `offset` bytes into `segs`; returns bytes copied.
size_t copy_from_segments(const GuestMemory& mem, const std::vector<Segment>& segs,
                          uint64_t offset, std::span<uint8_t> out);
// Copies up to in.size() bytes into `segs` starting `offset` bytes in; returns bytes copied.
size_t copy_to_segments(GuestMemory& mem, const std::vector<Segment>& segs, uint64_t offset,
                        std::span<const uint8_t> in);
// Host iovecs for [offset, offset+len) of `segs` (for preadv/pwritev/writev straight into
// guest RAM). Fails when the range is past the end of the segments.
Expected<std::vector<iovec>> segments_iov(GuestMemory& mem, const std::vector<Segment>& segs,
                                          uint64_t offset, uint64_t len);

}  // namespace gears::vmm::virtio
