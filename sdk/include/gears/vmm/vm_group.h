// The VMs that share one --shm region on this host, as their VMMs see each other (doc/shm.md,
// "VM groups"). What a VMM half needs for one-copy transfers between co-located guests: a
// small memory area only the group's VMMs map (no guest sees it: a trusted place to publish
// what one VM's guest allowed the others to read), and read access to a member VM's RAM.
// gears-vmm implements it; a service gets it from ServiceHost::vm_group().
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gears/expected.h"

namespace gears::vmm {

class VmGroup {
 public:
  static constexpr std::uint32_t kMaxMembers = 16;

  virtual ~VmGroup() = default;
  // This VM's member number in the group, 0 .. kMaxMembers-1, fixed while it runs.
  virtual std::uint32_t self() const = 0;
  // Memory the group's VMMs share and no guest maps; zeroed when the group starts (its first
  // VM attaches). Services divide it among themselves by member number; another VMM of the
  // group may write it at any time.
  virtual std::span<std::uint8_t> vmm_area() = 0;
  // Copies member `member`'s guest RAM [gpa, gpa + out.size()) into `out`. Fails unless that
  // VM is running and the range is RAM of one of its regions; `member` may be self(). Any
  // thread; the member's RAM is mapped read-only on first use.
  virtual Expected<void> read_member_ram(std::uint32_t member, std::uint64_t gpa, std::span<std::uint8_t> out) = 0;
};

}  // namespace gears::vmm
