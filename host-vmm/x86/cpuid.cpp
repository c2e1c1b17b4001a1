#include "x86/cpuid.h"

#include <cpuid.h>

#include <algorithm>
#include <cstring>

namespace gears::vmm::x86 {

namespace {

constexpr uint32_t kLeaf1EcxTscDeadline = 1u << 24;
constexpr uint32_t kLeaf1EcxHypervisor = 1u << 31;
constexpr uint32_t kLeaf1EdxHtt = 1u << 28;

uint32_t bits_for(uint32_t n) {  // smallest w with (1 << w) >= n
  uint32_t w = 0;
  while ((1u << w) < n) ++w;
  return w;
}

}  // namespace

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2>& supported, uint32_t id, uint32_t count) {
  std::vector<kvm_cpuid_entry2> out = supported;
  count = std::max(count, 1u);
  bool has_kvm_leaves = false;
  for (auto& e : out) {
    switch (e.function) {
      case 1:
        e.ecx |= kLeaf1EcxHypervisor | kLeaf1EcxTscDeadline;
        e.ebx = (e.ebx & 0x0000ffffu) | (id << 24) | (std::min(count, 255u) << 16);
        if (count > 1) e.edx |= kLeaf1EdxHtt;
        break;
      case 4:  // deterministic cache parameters: EAX[31:26] = cores per package - 1
        e.eax = (e.eax & 0x03ffffffu) | ((count - 1) << 26);
        // EAX[25:14] = logical CPUs sharing this cache - 1; one thread per core.
        e.eax &= ~(0xfffu << 14);
        break;
      case 0xb:
      case 0x1f:  // extended topology: one thread per core, `count` cores
        e.edx = id;
        if (e.index == 0) {
          e.eax = 0;
          e.ebx = 1;
          e.ecx = (1u << 8) | e.index;  // SMT level
        } else if (e.index == 1) {
          e.eax = bits_for(count);
          e.ebx = count;
          e.ecx = (2u << 8) | e.index;  // core level
        } else {
          e.eax = e.ebx = 0;
          e.ecx = e.index;
        }
        break;
      case 0x80000008:
        e.ecx = (e.ecx & ~0xf0ffu) | (count - 1) | (bits_for(count) << 12);
        break;
      case 0x8000001e:
        e.eax = id;       // extended APIC id
        e.ebx = id & 0xff;  // core id, one thread per core
        e.ecx = 0;        // node 0, one node
        e.edx = 0;
        break;
      case 0x40000000:
        has_kvm_leaves = true;
        break;
      default:
        break;
    }
  }
  // kvm-clock is found through the KVM signature leaves; KVM always reports them, but without
  // them the guest calibrates the TSC against the PIT for seconds under emulation.
  if (!has_kvm_leaves) {
    kvm_cpuid_entry2 sig{};
    sig.function = 0x40000000;
    sig.eax = 0x40000001;
    std::memcpy(&sig.ebx, "KVMK", 4);
    std::memcpy(&sig.ecx, "VMKV", 4);
    std::memcpy(&sig.edx, "M\0\0\0", 4);
    out.push_back(sig);
  }
  return out;
}

bool host_cpu_is_amd() {
  unsigned a = 0, b = 0, c = 0, d = 0;
  char vendor[13] = {};
  if (!__get_cpuid(0, &a, &b, &c, &d)) return false;
  std::memcpy(vendor, &b, 4);
  std::memcpy(vendor + 4, &d, 4);
  std::memcpy(vendor + 8, &c, 4);
  return std::strcmp(vendor, "AuthenticAMD") == 0 || std::strcmp(vendor, "HygonGenuine") == 0;
}

}  // namespace gears::vmm::x86
