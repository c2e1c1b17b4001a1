#include "disk/disk_model.h"

#include <algorithm>
#include <cmath>

namespace gears::vmm::disk {

DiskModel::DiskModel(uint64_t capacity_sectors, DiskModelParams p)
    : capacity_(std::max<uint64_t>(capacity_sectors, 1)), p_(p),
      full_stroke_ms_(p.track_to_track_ms + (p.average_seek_ms - p.track_to_track_ms) * 15.0 / 8.0) {}

uint64_t DiskModel::service_ns(uint64_t head, const DiskRequest& r) const {
  double ms = 0;
  if (r.sector != head) {
    const uint64_t dist = r.sector > head ? r.sector - head : head - r.sector;
    const double frac = std::min(1.0, static_cast<double>(dist) / static_cast<double>(capacity_));
    ms += p_.track_to_track_ms + (full_stroke_ms_ - p_.track_to_track_ms) * std::sqrt(frac);
    ms += 30'000.0 / p_.rpm;  // half a revolution
  }
  ms += static_cast<double>(r.sectors) * 512.0 / (p_.transfer_mb_s * 1e3);
  return static_cast<uint64_t>(ms * 1e6);
}

}  // namespace gears::vmm::disk
