// An opt-in latency model of a rotating disk, for evaluating request schedulers: the file
// backend of a test machine has no seek cost, so the order in which requests are served would
// not matter on it (doc/disk.md).
//
// Per request, with the head where the previous request ended:
//   seek      0 for a request that starts exactly there (sequential); else
//             track_to_track + (full_stroke - track_to_track) * sqrt(distance / capacity)
//             (seek time grows with the square root of the distance for the short and middle
//             seeks that dominate: the arm accelerates, then coasts);
//   rotation  half a revolution for a non-sequential request (the expected wait for the
//             sector to come round), 0 for a sequential one;
//   transfer  bytes / sustained transfer rate.
// full_stroke is derived from the datasheet's *average* seek: two uniformly random positions
// are on average sqrt-distance 8/15 of the stroke apart, so average = t2t + (full - t2t) * 8/15.
// Deterministic (no random rotational position): the same request order costs the same time.
#pragma once

#include <cstdint>

#include "disk/disk_request.h"

namespace gears::vmm::disk {

struct DiskModelParams {
  // Seagate Barracuda 7200.12 (ST3500418AS) product manual: average read seek < 8.5 ms,
  // track-to-track read seek < 1.0 ms, 7200 rpm (average latency 4.16 ms), sustained data
  // rate up to 125 MB/s (doc/disk.md).
  double track_to_track_ms = 1.0;
  double average_seek_ms = 8.5;
  double rpm = 7200;
  double transfer_mb_s = 125;  // 10^6 bytes per second
};

class DiskModel {
 public:
  DiskModel(uint64_t capacity_sectors, DiskModelParams p = {});

  // The time to serve `r` with the head at sector `head` (where the previous request ended).
  uint64_t service_ns(uint64_t head, const DiskRequest& r) const;
  double full_stroke_ms() const { return full_stroke_ms_; }

 private:
  uint64_t capacity_;
  DiskModelParams p_;
  double full_stroke_ms_;
};

}  // namespace gears::vmm::disk
