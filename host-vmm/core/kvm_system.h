// The host's KVM: /dev/kvm, its API version, capabilities, and which kind of KVM serves it.
//
// gears-vmm targets hardware KVM (kvm_intel / kvm_amd). A paravirtual PVM /dev/kvm runs stock
// guest kernels ~650x slower with different semantics (FINDINGS.md), so it is refused unless
// the user forces it.
#pragma once

#include <linux/kvm.h>

#include <string>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm {

enum class KvmFlavour { Hardware, Pvm, Unknown };

const char* flavour_name(KvmFlavour f);

// Reads /sys/module (or `sysfs_module_dir`, for tests) to tell which KVM module is loaded.
KvmFlavour detect_kvm_flavour(const std::string& sysfs_module_dir = "/sys/module");

class KvmSystem {
 public:
  // Opens `device`, checks the API version and the capabilities gears-vmm needs.
  // Refuses a PVM KVM unless `force_pvm`.
  static Expected<KvmSystem> open(const std::string& device, bool force_pvm);

  KvmSystem() = default;
  KvmSystem(KvmSystem&& o) noexcept;
  KvmSystem& operator=(KvmSystem&& o) noexcept;
  KvmSystem(const KvmSystem&) = delete;
  KvmSystem& operator=(const KvmSystem&) = delete;
  ~KvmSystem();

  int fd() const { return fd_; }
  KvmFlavour flavour() const { return flavour_; }
  // KVM_CHECK_EXTENSION on the system fd: 0 when absent.
  int check_extension(long cap) const;
  int max_vcpus() const;
  int vcpu_mmap_size() const { return mmap_size_; }

  Expected<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;

 private:
  int fd_ = -1;
  int mmap_size_ = 0;
  KvmFlavour flavour_ = KvmFlavour::Unknown;
};

}  // namespace gears::vmm
