// One block request as the VMM's disk scheduler sees it: where, how much, which way, and who
// issued it. The issuer is Antfarm's process identity: the address-space root (CR3 without
// PCID/flag bits) the notifying vCPU ran in when the guest's driver kicked the queue; 0 when
// unknown (no vCPU context, or the registers could not be read).
#pragma once

#include <cstdint>

namespace gears::vmm::disk {

struct DiskRequest {
  uint64_t seq = 0;         // arrival order (unique per device)
  bool write = false;
  uint64_t sector = 0;      // first 512-byte sector
  uint64_t sectors = 0;     // length in sectors
  uint64_t issuer = 0;      // address-space root at the notify; 0: unknown
  uint64_t arrival_ns = 0;  // when it reached the scheduler

  uint64_t end() const { return sector + sectors; }
};

}  // namespace gears::vmm::disk
