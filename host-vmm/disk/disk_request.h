// One block request as the VMM's disk scheduler sees it: where, how much, which way, and who
// issued it. The issuer is Antfarm's process identity, from the address-space root (CR3
// without PCID/flag bits) the notifying vCPU ran in when the guest's driver kicked the queue:
// the inferred process behind that root where the VMM tracks processes (a root is reused once
// its process is gone; the process is not), else the root itself; 0 when unknown (no vCPU
// context, or the registers could not be read).
#pragma once

#include <cstdint>

namespace gears::vmm::disk {

// An issuer key with this bit set names a tracked process (its tracker id in the low bits);
// without it, the key is an address-space root (page-aligned, below 2^52).
constexpr uint64_t kIssuerIsProcess = 1ULL << 63;

struct Issuer {
  uint64_t key = 0;            // the scheduler's identity (see above)
  uint64_t address_space = 0;  // the root at the kick
};

struct DiskRequest {
  uint64_t seq = 0;         // arrival order (unique per device)
  bool write = false;
  uint64_t sector = 0;      // first 512-byte sector
  uint64_t sectors = 0;     // length in sectors
  uint64_t issuer = 0;      // Issuer::key; 0: unknown
  uint64_t arrival_ns = 0;  // when it reached the scheduler
  uint64_t address_space = 0;  // Issuer::address_space (for statistics)

  uint64_t end() const { return sector + sectors; }
};

}  // namespace gears::vmm::disk
