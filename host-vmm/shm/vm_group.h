// The VMs attached to one --shm region, as their VMMs see each other (doc/shm.md, "VM groups"):
// gears::vmm::VmGroup for the services, built on the VMM-only area at the start of the region's
// file (SharedRegion::vmm_area).
//
// The area's first kTableSize bytes are the member table: one record per member, claimed by
// compare-and-swap of its state word, holding what a peer needs to map the member's guest RAM
// (pid and process start time, and the device/inode/descriptor number of its RAM memfd, opened
// by the peer through /proc/<pid>/fd/<n> and checked by inode before it is mapped). A record
// whose process is gone (or whose pid now names another process) is free again. The rest of
// the area is the services' (VmGroup::vmm_area).
//
// Peers are other gears-vmm processes of the same host and user: trusted like this one (they
// could ptrace it anyway). Guests are not: every guest address a service passes is checked
// against the member's RAM layout (GuestMemory::file_offset) before the copy.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>

#include "gears/expected.h"
#include "gears/vmm/vm_group.h"
#include "shm/shared_region.h"

namespace gears::vmm::shm {

class VmGroupMember final : public VmGroup {
 public:
  static constexpr uint64_t kTableSize = 64 << 10;

  // Claims a member record in `region`'s table for this process, whose guest RAM is the memfd
  // `ram_fd` of `ram_size` bytes. Fails when all kMaxMembers records are taken by live VMs.
  static Expected<std::unique_ptr<VmGroupMember>> join(SharedRegion& region, int ram_fd, uint64_t ram_size);
  ~VmGroupMember() override;  // frees the record and unmaps every peer's RAM

  uint32_t self() const override { return self_; }
  std::span<uint8_t> vmm_area() override;
  Expected<void> read_member_ram(uint32_t member, uint64_t gpa, std::span<uint8_t> out) override;

 private:
  struct Mapping;  // one peer's RAM, mapped read-only
  VmGroupMember(SharedRegion& region, uint32_t self) : region_(region), self_(self) {}
  Expected<std::shared_ptr<const Mapping>> mapping_of(uint32_t member);

  SharedRegion& region_;
  const uint32_t self_;
  std::mutex mu_;
  std::array<std::shared_ptr<const Mapping>, kMaxMembers> mapped_;
};

// The start time of process `pid` (clock ticks since boot, /proc/<pid>/stat field 22); 0 when
// there is no such process. With the pid it names one process for as long as the host runs.
uint64_t process_start_time(pid_t pid);

}  // namespace gears::vmm::shm
