// virtio-net's receive queue: puts frames, behind their virtio_net_hdr_v1, into the buffers the
// driver posts, and keeps frames that find no buffer until it posts some.
//
// Without VIRTIO_NET_F_MRG_RXBUF a frame goes into one buffer (chain), which must hold header
// and frame (Linux then posts 1518-byte buffers, or ~64 KiB ones when it negotiated GUEST_TSO);
// a buffer too small is returned empty and the frame dropped (rx_dropped_small). With
// MRG_RXBUF a frame spans as many buffers as it needs: the header in the first, num_buffers =
// how many, each buffer's used length = what was written into it, all pushed together so they
// are consecutive in the used ring. Buffers popped for a frame that does not fit yet are held
// (in order) for it until the driver posts more; a frame that cannot fit even with every entry
// of the ring held is dropped (rx_dropped_small). A first buffer shorter than the header, or a
// buffer with no writable bytes, is returned empty.
//
// Not thread-safe: the device calls it under its receive lock.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <span>
#include <vector>

#include "virtio/net_hdr.h"
#include "virtio/virtqueue.h"

namespace gears::vmm::virtio {

class NetRx {
 public:
  struct Counters {
    std::atomic<uint64_t> frames{0}, bytes{0}, merged{0}, dropped_full{0}, dropped_small{0}, pending{0},
        interrupts{0};
  };

  NetRx(size_t pending_max, size_t pending_bytes_max)
      : pending_max_(pending_max), pending_bytes_max_(pending_bytes_max) {}

  // DRIVER_OK: the queue to fill, and whether frames may span buffers.
  void attach(Virtqueue* vq, bool mergeable);
  // Reset: forget the queue, the buffers held and the frames waiting.
  void detach();
  bool attached() const { return vq_ != nullptr; }

  // One frame with its header (num_buffers is filled in here). Frames already waiting go
  // first; one that finds no buffer waits (bounded: pending_max frames, pending_bytes_max
  // bytes, beyond that dropped_full).
  void deliver(const NetHdr& h, std::span<const uint8_t> frame);
  // Moves waiting frames into buffers the driver posted since (a receive-queue notify).
  void drain();
  // The used-buffer notification for what was placed since the last signal (EVENT_IDX rules).
  void signal();

  const Counters& counters() const { return counters_; }

 private:
  enum class Place { kDone, kNoBuffers };
  Place place(const NetHdr& h, std::span<const uint8_t> frame);
  Place place_one(const NetHdr& h, std::span<const uint8_t> frame);
  Place place_merged(const NetHdr& h, std::span<const uint8_t> frame);
  // Writes header + frame across `chains` (a byte stream) and pushes each with its length.
  void write(NetHdr h, std::span<const uint8_t> frame, std::span<const Chain> chains);

  struct Pending {
    NetHdr hdr;
    std::vector<uint8_t> frame;
  };

  const size_t pending_max_;
  const size_t pending_bytes_max_;
  Virtqueue* vq_ = nullptr;
  bool mergeable_ = false;
  std::vector<Chain> held_;  // popped buffers waiting for the frame at the head (MRG_RXBUF)
  uint64_t held_bytes_ = 0;  // their writable bytes
  std::deque<Pending> pending_;
  size_t pending_bytes_ = 0;
  Counters counters_;
};

}  // namespace gears::vmm::virtio
