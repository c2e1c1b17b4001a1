// Composes a bootable x86 machine from a VmConfig (Firecracker's builder): KVM, guest RAM,
// the VM with its devices, ACPI tables, the loaded kernel, and one vCPU per CPU. The boot path
// of a guest reads top to bottom in builder.cpp's build().
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "acpi/tables.h"
#include "config/vm_config.h"
#include "core/guest_memory.h"
#include "core/kvm_system.h"
#include "core/run_control.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "devices/console.h"
#include "gears/expected.h"
#include "net/switch.h"
#include "shm/shared_region.h"
#include "shm/vm_group.h"
#include "virtio/blk.h"
#include "virtio/net.h"

namespace gears::vmm {

// One --net NIC as built, for the control socket's "net" stats.
struct NicInfo {
  std::string name;            // the switch port's name: net0, net1, ... (eth0, ... in the guest)
  net::MacAddress mac;
  std::string overlay;         // configuration file; empty: local-only switch
  uint16_t mtu = 0;            // offered to the guest (0: not offered)
  virtio::VirtioNetDevice* device = nullptr;  // owned by its transport on the VM's MMIO bus
  std::shared_ptr<net::Switch> sw;            // the switch the NIC is a port of
  std::shared_ptr<net::Port> port;            // that port (a service's NIC view uses it)
};
// One --virtio-blk disk as built, for the control socket's "disks" stats.
struct DiskInfo {
  std::string path;
  virtio::VirtioBlkDevice* device = nullptr;  // owned by its transport on the VM's MMIO bus
};
// One --shm region as attached: where the guest sees it.
struct SharedRegionInfo {
  std::unique_ptr<shm::SharedRegion> region;
  uint64_t gpa = 0;
  std::unique_ptr<shm::VmGroupMember> group;  // this VM among the region's VMs (destroyed first);
                                              // null when the group was full at start-up
};
// One overlay switch (NICs naming the same file share it), by configuration file.
struct SwitchInfo {
  std::string overlay;         // empty: the local-only switch
  std::shared_ptr<net::Switch> sw;
};

class Machine {
 public:
  static Expected<std::unique_ptr<Machine>> build(const config::VmConfig& cfg);
  ~Machine();

  // Starts every vCPU, waits until the run ends, stops and joins them.
  StopReason run();

  RunControl& control() { return control_; }
  Vm& vm() { return *vm_; }
  GuestMemory& memory() { return mem_; }
  std::vector<std::unique_ptr<Vcpu>>& vcpus() { return vcpus_; }
  const std::vector<NicInfo>& nics() const { return nics_; }
  const std::vector<DiskInfo>& disks() const { return disks_; }
  const std::vector<SwitchInfo>& switches() const { return switches_; }
  const std::vector<SharedRegionInfo>& shared_regions() const { return shared_regions_; }
  // Names the process behind an address-space root (its tracker id; 0: unknown) for the
  // disks' issuers. Set before run() by whoever tracks processes; without it, issuers are roots.
  void set_process_resolver(std::function<uint64_t(uint64_t root)> f) { *process_resolver_ = std::move(f); }

 private:
  Machine() = default;
  Expected<void> add_devices(const config::VmConfig& cfg, std::vector<uint64_t>& mmio_bases);
  Expected<void> attach_shared_regions(const config::VmConfig& cfg, std::vector<acpi::SharedRegionDevice>& acpi_out);
  Expected<std::shared_ptr<net::Switch>> switch_for(const config::VmConfig& cfg, const std::string& overlay);

  // Destruction runs bottom-up: vCPUs stop before the VM, the VM (and its devices) before RAM.
  KvmSystem kvm_;
  GuestMemory mem_;
  RunControl control_;
  std::unique_ptr<devices::Console> console_;
  std::vector<int> owned_fds_;
  // Switches outlive the devices on their ports (the VM is reset first in ~Machine).
  std::vector<SwitchInfo> switches_;
  std::vector<NicInfo> nics_;
  std::vector<DiskInfo> disks_;
  std::shared_ptr<std::function<uint64_t(uint64_t)>> process_resolver_ =
      std::make_shared<std::function<uint64_t(uint64_t)>>();
  // Shared regions outlive the VM whose memory slots point into them.
  std::vector<SharedRegionInfo> shared_regions_;
  std::unique_ptr<Vm> vm_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

// The process exit code for a StopReason (documented in --help and doc/vmm.md).
int exit_code(StopReason r);
const char* describe(StopReason r);

}  // namespace gears::vmm
