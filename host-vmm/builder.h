// Composes a bootable x86 machine from a VmConfig (Firecracker's builder): KVM, guest RAM,
// the VM with its devices, ACPI tables, the loaded kernel, and one vCPU per CPU. The boot path
// of a guest reads top to bottom in builder.cpp's build().
#pragma once

#include <memory>
#include <vector>

#include "config/vm_config.h"
#include "core/guest_memory.h"
#include "core/kvm_system.h"
#include "core/run_control.h"
#include "core/vcpu.h"
#include "core/vm.h"
#include "devices/console.h"
#include "gears/expected.h"

namespace gears::vmm {

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

 private:
  Machine() = default;
  Expected<void> add_devices(const config::VmConfig& cfg, std::vector<uint64_t>& mmio_bases);

  // Destruction runs bottom-up: vCPUs stop before the VM, the VM (and its devices) before RAM.
  KvmSystem kvm_;
  GuestMemory mem_;
  RunControl control_;
  std::unique_ptr<devices::Console> console_;
  std::vector<int> owned_fds_;
  std::unique_ptr<Vm> vm_;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
};

// The process exit code for a StopReason (documented in --help and doc/vmm.md).
int exit_code(StopReason r);
const char* describe(StopReason r);

}  // namespace gears::vmm
