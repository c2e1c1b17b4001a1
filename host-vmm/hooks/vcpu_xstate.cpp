#include "hooks/vcpu_xstate.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <algorithm>
#include <cstring>

namespace gears::vmm::hooks {

namespace {
// The first byte of a saved image says how it was taken.
enum Kind : uint8_t { kXsave2 = 1, kXsave = 2, kFpu = 3 };
}  // namespace

Expected<std::vector<uint8_t>> VcpuXstate::save() {
  // KVM_GET_XSAVE2 when KVM sizes the image, else KVM_GET_XSAVE; some KVMs (an emulated SVM
  // whose CPUID XSAVE sizes disagree, seen in the QEMU/TCG test host) refuse both with EINVAL:
  // then KVM_GET_FPU, the x87/SSE state (XMM0-15, MXCSR) without the upper AVX halves.
  if (size_ > 0) {
    std::vector<uint8_t> out(1 + std::max(size_, sizeof(kvm_xsave)));
    if (ioctl(v_.fd(), KVM_GET_XSAVE2, out.data() + 1) == 0) {
      out[0] = kXsave2;
      return out;
    }
  }
  {
    std::vector<uint8_t> out(1 + sizeof(kvm_xsave));
    if (ioctl(v_.fd(), KVM_GET_XSAVE, out.data() + 1) == 0) {
      out[0] = kXsave;
      return out;
    }
  }
  kvm_fpu fpu{};
  if (ioctl(v_.fd(), KVM_GET_FPU, &fpu) < 0) return fail_errno("KVM_GET_XSAVE2/KVM_GET_XSAVE/KVM_GET_FPU");
  std::vector<uint8_t> out(1 + sizeof fpu);
  out[0] = kFpu;
  std::memcpy(out.data() + 1, &fpu, sizeof fpu);
  return out;
}

Expected<void> VcpuXstate::restore(const std::vector<uint8_t>& state) {
  if (state.empty()) return fail("empty extended-state image");
  switch (state[0]) {
    case kXsave2:
    case kXsave:
      if (state.size() < 1 + sizeof(kvm_xsave)) return fail("XSAVE image too small");
      // KVM_SET_XSAVE takes the whole image KVM_GET_XSAVE2 gave, larger than 4 KiB or not.
      if (ioctl(v_.fd(), KVM_SET_XSAVE, state.data() + 1) < 0) return fail_errno("KVM_SET_XSAVE");
      return {};
    case kFpu: {
      kvm_fpu fpu{};
      if (state.size() != 1 + sizeof fpu) return fail("FPU image of the wrong size");
      std::memcpy(&fpu, state.data() + 1, sizeof fpu);
      if (ioctl(v_.fd(), KVM_SET_FPU, &fpu) < 0) return fail_errno("KVM_SET_FPU");
      return {};
    }
    default:
      return fail("unknown extended-state image");
  }
}

}  // namespace gears::vmm::hooks
