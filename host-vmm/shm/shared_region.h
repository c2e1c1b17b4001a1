// One region of memory shared between co-located VMs: a file (normally on /dev/shm) that every
// gears-vmm naming it maps MAP_SHARED and gives its guest as a guest-physical range (the
// builder registers it as a KVM memory slot and describes it in ACPI, doc/shm.md).
//
// Lifetime without a coordinator: each attached gears-vmm holds a shared flock on the file.
//  - attach: if an exclusive lock can be taken, nobody else is attached (a new file, or one a
//    dead VMM left behind): the contents are discarded (truncated to 0, then to the size), so a
//    new set of VMs never sees a previous job's rings. Otherwise the file must already have
//    the requested size.
//  - detach (destructor): the last one out (exclusive lock succeeds) unlinks the file.
// A gears-vmm that dies loses its lock with its process; the peers keep running on the mapping.
//
// The file starts with kVmmAreaSize bytes only the VMMs map (the group's member table and the
// services' VMM-only area, shm/vm_group.h); the guests see the rest.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "gears/expected.h"
#include "shm/region_spec.h"

namespace gears::vmm::shm {

class SharedRegion {
 public:
  static constexpr uint64_t kVmmAreaSize = 2ULL << 20;

  static Expected<std::unique_ptr<SharedRegion>> attach(const RegionSpec& spec);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  const RegionSpec& spec() const { return spec_; }
  uint64_t size() const { return spec_.size; }
  uint8_t* host() const { return host_; }  // what the guests see, size() bytes
  // The part of the file no guest maps (kVmmAreaSize bytes before host()).
  std::span<uint8_t> vmm_area() const { return {host_ - kVmmAreaSize, kVmmAreaSize}; }
  int fd() const { return fd_; }
  // True when this attach found no other VM attached (and so started from zeroed memory).
  bool first() const { return first_; }

  // A bounds-checked view of [offset, offset+len) (no wrap-around); the memory is shared with
  // other VMs and changes under the caller: copy before validating.
  Expected<std::span<uint8_t>> span(uint64_t offset, uint64_t len) const;

 private:
  SharedRegion() = default;
  RegionSpec spec_;
  int fd_ = -1;
  uint8_t* host_ = nullptr;
  bool first_ = false;
  bool attached_ = false;  // mapped: only then may the destructor remove the file
};

}  // namespace gears::vmm::shm
