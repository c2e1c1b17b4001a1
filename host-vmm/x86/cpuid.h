// Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID. KVM reports what it *can* offer; a VMM has to
// fill in the topology and a few bits firmware or the VMM would set (FINDINGS.md):
// hypervisor bit (else no kvm-clock -> slow TSC calibration), TSC-deadline timer, APIC ids,
// logical/core counts, and leaf 0x8000001E which comes back zero while TOPOEXT is set.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace gears::vmm::x86 {

// Returns the entries for vCPU `id` of `count` vCPUs (APIC id = vCPU id).
std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(const std::vector<kvm_cpuid_entry2>& supported, uint32_t id, uint32_t count);


// True when the host CPU (and so the guest's, which sees the host's vendor string) is AMD or
// Hygon: the guest kernel then leaves PTI off, which decides where the syscall stub can live.
bool host_cpu_is_amd();

}  // namespace gears::vmm::x86
