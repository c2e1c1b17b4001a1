// The borrow engine's ExtendedState for a KVM vCPU: KVM_GET_XSAVE(2) / KVM_SET_XSAVE on the
// vCPU's own thread (called from its exit handler), so a borrowed guest thread gets its
// FPU/SSE/AVX registers back exactly.
#pragma once

#include <cstddef>

#include "core/vcpu.h"
#include "tools/inject/borrow_engine.h"

namespace gears::vmm::hooks {

class VcpuXstate : public inject::ExtendedState {
 public:
  // `size`: KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) when positive (the guest's XSAVE image may
  // exceed the 4 KiB of struct kvm_xsave; KVM_GET_XSAVE then fails with EINVAL), else 0.
  VcpuXstate(Vcpu& v, size_t xsave2_size) : v_(v), size_(xsave2_size) {}
  Expected<std::vector<uint8_t>> save() override;
  Expected<void> restore(const std::vector<uint8_t>& state) override;

 private:
  Vcpu& v_;
  size_t size_;
};

}  // namespace gears::vmm::hooks
