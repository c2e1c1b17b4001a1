/* gears ABI: hypercall numbers and the calling convention between guest halves and the VMM.
 * C-compatible: included by C++ (gears-vmm, generated stubs) and by C (kernel modules, kbuild,
 * gcc-12). This file is the only definition of these values; nothing re-declares them. */
#ifndef GEARS_ABI_HYPERCALL_H
#define GEARS_ABI_HYPERCALL_H

/* Hypercall number: (16-bit service id << 16) | 16-bit function index.
 * The service id is derived from the service name (gears_abi_service_id below); gears-vmm
 * refuses a deploy whose id collides with a loaded service. */
#define GEARS_HC_SERVICE(nr) ((unsigned)(((nr) >> 16) & 0xffffu))
#define GEARS_HC_FUNCTION(nr) ((unsigned)((nr) & 0xffffu))
#define GEARS_HC_MAKE(service, fn) ((((unsigned long)(service) & 0xffffu) << 16) | ((unsigned long)(fn) & 0xffffu))

/* Guest KERNEL -> VMM: a 32-bit port-I/O write (`outl %eax, %dx`) to GEARS_DOORBELL_PORT
 * (KVM_EXIT_IO; `vmcall` never leaves KVM). The port is above 0xff, so `out` needs it in DX:
 * RDX = GEARS_DOORBELL_PORT, RAX = hypercall number, arguments in RDI RSI R10 R8 R9 (five,
 * the same count as the user path; RDX is *not* an argument), result in RAX once the `out`
 * returns. The value written (EAX) is ignored by the VMM: it reads the registers. */
#define GEARS_DOORBELL_PORT 0x0ee0

/* Guest USER -> VMM: a reserved syscall number caught by gears-vmm's selective syscall stub.
 * RAX = GEARS_SYSCALL_NR, RDI = hypercall number, arguments in RSI RDX R10 R8 R9 (five at
 * most), result in RAX. Without gears-vmm the guest kernel answers -ENOSYS, which the stubs
 * report as "service not present". */
#define GEARS_SYSCALL_NR 0x4745 /* 'GE': far above any x86-64 syscall number */

/* Results: >= 0 success value; a negative errno on error. The dispatcher answers
 * -ENOSYS for an unknown number, -EFAULT for a bad guest pointer, -E2BIG for an argument
 * larger than GEARS_MAX_ARG_BYTES, -EINVAL for a wrong size. */
#define GEARS_MAX_ARG_BYTES 65536u
#define GEARS_MAX_ARGS 5

/* Non-scalar arguments (trivially copyable structs) cross as two registers: the guest
 * virtual address and the size in bytes, in that order. Results that are structs come back
 * through an extra trailing (pointer, size) pair that the VMM half writes. */

/* Service id: FNV-1a 32-bit of the service name, folded to 16 bits, never 0 (0 is reserved
 * for gears-vmm's own calls). Deterministic so the compiler, the manifest and the VMM agree. */
static inline unsigned gears_abi_service_id(const char *name)
{
  unsigned h = 2166136261u;
  while (*name) {
    h ^= (unsigned char)*name++;
    h *= 16777619u;
  }
  h = (h >> 16) ^ (h & 0xffffu);
  return h == 0 ? 1u : h;
}

#endif /* GEARS_ABI_HYPERCALL_H */
