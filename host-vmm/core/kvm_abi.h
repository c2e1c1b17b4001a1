// ioctl numbers for KVM structures that end in a flexible array.
//
// Debian 12's <linux/kvm.h> declares kvm_cpuid2 / kvm_msrs with a zero-length array that g++
// sizes differently from C (12 vs 8, 16 vs 8 bytes), and _IOW() encodes sizeof into the ioctl
// number: the header's KVM_SET_CPUID2 etc. are then wrong in C++ and KVM answers EINVAL
// (FINDINGS.md). These are the C values, computed from fixed-size headers.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace gears::vmm::kvm_abi {

struct NentHeader {  // struct kvm_cpuid2 / kvm_msrs as C lays them out (8 bytes)
  uint32_t n;
  uint32_t pad;
};
static_assert(sizeof(NentHeader) == 8);

inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, NentHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, NentHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, NentHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, NentHeader);
inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, NentHeader);

// C values, checked against the kernel's uapi (x86-64).
static_assert(kSetCpuid2 == 0x4008ae90UL);
static_assert(kGetSupportedCpuid == 0xc008ae05UL);
static_assert(kSetMsrs == 0x4008ae89UL);

}  // namespace gears::vmm::kvm_abi
