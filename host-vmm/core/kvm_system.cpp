#include "core/kvm_system.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <utility>

#include "core/kvm_abi.h"

namespace gears::vmm {

const char* flavour_name(KvmFlavour f) {
  switch (f) {
    case KvmFlavour::Hardware: return "hardware";
    case KvmFlavour::Pvm: return "pvm";
    case KvmFlavour::Unknown: break;
  }
  return "unknown";
}

KvmFlavour detect_kvm_flavour(const std::string& dir) {
  auto exists = [&](const char* m) {
    struct stat st{};
    return ::stat((dir + "/" + m).c_str(), &st) == 0;
  };
  // PVM first: a PVM host may also carry kvm_intel/kvm_amd built in but unusable.
  if (exists("kvm_pvm")) return KvmFlavour::Pvm;
  if (exists("kvm_intel") || exists("kvm_amd")) return KvmFlavour::Hardware;
  return KvmFlavour::Unknown;
}

KvmSystem::KvmSystem(KvmSystem&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)), mmap_size_(o.mmap_size_), flavour_(o.flavour_) {}
KvmSystem& KvmSystem::operator=(KvmSystem&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = std::exchange(o.fd_, -1);
    mmap_size_ = o.mmap_size_;
    flavour_ = o.flavour_;
  }
  return *this;
}
KvmSystem::~KvmSystem() {
  if (fd_ >= 0) ::close(fd_);
}

Expected<KvmSystem> KvmSystem::open(const std::string& device, bool force_pvm) {
  KvmSystem k;
  k.fd_ = ::open(device.c_str(), O_RDWR | O_CLOEXEC);
  if (k.fd_ < 0) {
    int e = errno;
    return fail_errno("cannot open " + device + " (is KVM available and accessible?)", e);
  }
  int ver = ::ioctl(k.fd_, KVM_GET_API_VERSION, 0);
  if (ver != KVM_API_VERSION) return fail(device + ": unsupported KVM API version " + std::to_string(ver));
  // Only probe the flavour of the real /dev/kvm: a test may point --kvm-device elsewhere.
  k.flavour_ = detect_kvm_flavour();
  if (k.flavour_ == KvmFlavour::Pvm && !force_pvm)
    return fail(device + " is served by kvm_pvm (paravirtual KVM): stock guests run ~650x slower "
                "there; use a hardware KVM host (or --force-pvm to try anyway)");
  struct Need {
    long cap;
    const char* name;
  };
  for (Need n : {Need{KVM_CAP_IRQCHIP, "IRQCHIP"}, Need{KVM_CAP_USER_MEMORY, "USER_MEMORY"},
                 Need{KVM_CAP_PIT2, "PIT2"}, Need{KVM_CAP_EXT_CPUID, "EXT_CPUID"},
                 Need{KVM_CAP_IMMEDIATE_EXIT, "IMMEDIATE_EXIT"}, Need{KVM_CAP_SET_TSS_ADDR, "SET_TSS_ADDR"}}) {
    if (k.check_extension(n.cap) <= 0)
      return fail(device + ": KVM lacks the required capability KVM_CAP_" + n.name);
  }
  k.mmap_size_ = ::ioctl(k.fd_, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (k.mmap_size_ < static_cast<int>(sizeof(kvm_run))) return fail_errno(device + ": KVM_GET_VCPU_MMAP_SIZE");
  return k;
}

int KvmSystem::check_extension(long cap) const {
  int r = ::ioctl(fd_, KVM_CHECK_EXTENSION, cap);
  return r < 0 ? 0 : r;
}

int KvmSystem::max_vcpus() const {
  int m = check_extension(KVM_CAP_MAX_VCPUS);
  if (m <= 0) m = check_extension(KVM_CAP_NR_VCPUS);
  return m > 0 ? m : 4;  // the API says: assume 4 when neither is reported
}

Expected<std::vector<kvm_cpuid_entry2>> KvmSystem::supported_cpuid() const {
  for (uint32_t n = 128; n <= 4096; n *= 2) {
    size_t bytes = sizeof(kvm_abi::NentHeader) + n * sizeof(kvm_cpuid_entry2);
    auto buf = std::make_unique<uint64_t[]>((bytes + 7) / 8);
    auto* hdr = reinterpret_cast<kvm_abi::NentHeader*>(buf.get());
    hdr->n = n;
    if (::ioctl(fd_, kvm_abi::kGetSupportedCpuid, hdr) == 0) {
      auto* e = reinterpret_cast<kvm_cpuid_entry2*>(hdr + 1);
      return std::vector<kvm_cpuid_entry2>(e, e + hdr->n);
    }
    if (errno != E2BIG) return fail_errno("KVM_GET_SUPPORTED_CPUID");
  }
  return fail("KVM_GET_SUPPORTED_CPUID: too many entries");
}

}  // namespace gears::vmm
