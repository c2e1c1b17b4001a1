// VcpuRegs <-> KVM's register structures (kvm_run sync regs or KVM_GET_REGS/SREGS). Data
// conversion only, no ioctl: the vCPU layer fills a VcpuRegs at an exit, hands it to the tools
// and writes the general registers back (marking KVM_SYNC_X86_REGS dirty) if they changed.
#pragma once

#include <linux/kvm.h>

#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm {

inline VcpuRegs vcpu_regs_from_kvm(const kvm_regs& r, const kvm_sregs& s) {
  VcpuRegs v;
  v.rax = r.rax, v.rbx = r.rbx, v.rcx = r.rcx, v.rdx = r.rdx;
  v.rsi = r.rsi, v.rdi = r.rdi, v.rsp = r.rsp, v.rbp = r.rbp;
  v.r8 = r.r8, v.r9 = r.r9, v.r10 = r.r10, v.r11 = r.r11;
  v.r12 = r.r12, v.r13 = r.r13, v.r14 = r.r14, v.r15 = r.r15;
  v.rip = r.rip, v.rflags = r.rflags;
  v.cr0 = s.cr0, v.cr2 = s.cr2, v.cr3 = s.cr3, v.cr4 = s.cr4, v.efer = s.efer;
  v.cpl = s.ss.dpl;  // SS.DPL is the CPL on both VMX and SVM
  return v;
}

// General registers, RIP and RFLAGS only: tools never change control registers this way.
inline void apply_vcpu_regs(const VcpuRegs& v, kvm_regs& r) {
  r.rax = v.rax, r.rbx = v.rbx, r.rcx = v.rcx, r.rdx = v.rdx;
  r.rsi = v.rsi, r.rdi = v.rdi, r.rsp = v.rsp, r.rbp = v.rbp;
  r.r8 = v.r8, r.r9 = v.r9, r.r10 = v.r10, r.r11 = v.r11;
  r.r12 = v.r12, r.r13 = v.r13, r.r14 = v.r14, r.r15 = v.r15;
  r.rip = v.rip, r.rflags = v.rflags;
}

}  // namespace gears::vmm
