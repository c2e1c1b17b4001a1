// A snapshot of one vCPU's registers as the GEARS tools see them.
//
// The vCPU layer fills it from kvm_run's sync regs (KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS) at
// an exit and writes the general registers back if a tool changed them; tools never issue
// register ioctls themselves. Plain data so that tools and their tests need no KVM.
#pragma once

#include <array>
#include <cstdint>

namespace gears::vmm {

struct VcpuRegs {
  uint64_t rax = 0, rbx = 0, rcx = 0, rdx = 0, rsi = 0, rdi = 0, rsp = 0, rbp = 0;
  uint64_t r8 = 0, r9 = 0, r10 = 0, r11 = 0, r12 = 0, r13 = 0, r14 = 0, r15 = 0;
  uint64_t rip = 0, rflags = 0;
  uint64_t cr0 = 0, cr2 = 0, cr3 = 0, cr4 = 0, efer = 0;
  uint8_t cpl = 0;  // from CS.selector & 3 (SS.dpl on SVM); 0 = kernel, 3 = user

  static constexpr uint64_t kCr0Pg = 1ULL << 31;
  static constexpr uint64_t kCr0Wp = 1ULL << 16;
  static constexpr uint64_t kCr4Pae = 1ULL << 5;
  static constexpr uint64_t kCr4Pcide = 1ULL << 17;
  static constexpr uint64_t kCr4La57 = 1ULL << 12;
  static constexpr uint64_t kEferLma = 1ULL << 10;
  static constexpr uint64_t kEferNxe = 1ULL << 11;

  // True in 64-bit mode with 4-level paging, the only mode the introspection walker handles.
  bool long_mode_4level() const {
    return (cr0 & kCr0Pg) && (cr4 & kCr4Pae) && (efer & kEferLma) && !(cr4 & kCr4La57);
  }

  // The x86-64 syscall calling convention as seen at the SYSCALL entry point: number in RAX,
  // arguments in RDI, RSI, RDX, R10, R8, R9; RCX holds the user RIP and R11 the user RFLAGS.
  uint64_t syscall_nr() const { return rax; }
  std::array<uint64_t, 6> syscall_args() const { return {rdi, rsi, rdx, r10, r8, r9}; }
};

}  // namespace gears::vmm
