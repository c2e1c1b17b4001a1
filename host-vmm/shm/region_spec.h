// `--shm name=NAME,size=SIZE[,path=FILE]`: a region of memory shared between co-located VMs
// (every gears-vmm naming the same file attaches the same memory). Parsing only; attaching is
// shared_region.h's job.
#pragma once

#include <cstdint>
#include <string>

#include "gears/abi/shm.h"
#include "gears/expected.h"

namespace gears::vmm::shm {

inline constexpr uint64_t kRegionAlign = GEARS_SHM_ALIGN;  // huge-page friendly
inline constexpr uint64_t kMaxRegionSize = 64ULL << 30;
inline constexpr size_t kMaxNameLen = GEARS_SHM_NAME_MAX;

struct RegionSpec {
  std::string name;  // [a-z0-9_-]{1,31}: the guest finds the region by it (ACPI _UID)
  uint64_t size = 0; // bytes, a multiple of kRegionAlign
  std::string path;  // backing file; default /dev/shm/gears-shm-<name>
};

// "name=mpi,size=64M[,path=/dev/shm/x]"; sizes as --mem ("64M", "1G"; bare numbers are MiB).
Expected<RegionSpec> parse_region_spec(const std::string& spec);

}  // namespace gears::vmm::shm
