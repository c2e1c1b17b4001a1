// The guest-kernel half's API. Freestanding: no libc, no libstdc++, no exceptions, no RTTI,
// no global constructors, no floating point (the half is compiled with the guest kernel's
// kbuild flags; gearsc checks the subset, see doc/sdk.md "Guest-kernel subset").
// The functions are implemented in C by the generated module glue (gears_k_* symbols), which
// is the only code that includes Linux headers.
#pragma once

#include "gears/abi/hypercall.h"
#include "gears/abi/shm.h"

#ifdef __cplusplus
extern "C" {
#endif

// What a kernel hook handler sees: the probed function's first six arguments (x86-64 SysV
// registers at the probe) and the current task.
struct gears_kernel_hook {
  unsigned long args[6];
  int pid;
  char comm[16];
};

void gears_k_log(const char* msg);
void gears_k_log_u64(const char* label, unsigned long long value);
int gears_k_current_pid(void);

/* Memory shared between co-located VMs (gears-vmm --shm name=NAME): its guest-physical range,
 * found by name. 0, or -ENOENT when this VM has no such region. */
int gears_k_shared_region(const char *name, unsigned long long *gpa, unsigned long long *size);
/* Makes the region mappable by guest processes as /dev/gears-NAME (mmap with MAP_SHARED;
 * lseek(fd, 0, SEEK_END) is its size) until the module is unloaded. 0, -ENOENT (no such region),
 * -EEXIST (exposed already), -ENOSPC, -ENOMEM, -EINVAL. Call it from the kernel half's
 * [[gears::on_load]] function. */
int gears_k_expose_shared_region(const char *name);

#ifdef __cplusplus
}  // extern "C"

namespace gears::kernel {

using Hook = ::gears_kernel_hook;

inline void log(const char* msg) { gears_k_log(msg); }
inline void log(const char* label, unsigned long long value) { gears_k_log_u64(label, value); }
inline int current_pid() { return gears_k_current_pid(); }

struct SharedRegion {
  unsigned long long gpa = 0, size = 0;
};
// The region `name` of this VM (--shm name=NAME), or a negative errno.
inline int shared_region(const char* name, SharedRegion& out) { return gears_k_shared_region(name, &out.gpa, &out.size); }
// /dev/gears-NAME for guest processes (mmap), until the module is unloaded.
inline int expose_shared_region(const char* name) { return gears_k_expose_shared_region(name); }

// Atomic add on a counter shared by all CPUs (hooks run concurrently).
inline unsigned long long atomic_add(unsigned long long* counter, unsigned long long v) {
  return __atomic_add_fetch(counter, v, __ATOMIC_RELAXED);
}

// Guest kernel -> VMM doorbell (abi/hypercall.h): RAX = number, RDX = GEARS_DOORBELL_PORT,
// arguments in RDI RSI R10 R8 R9; the VMM writes the result into RAX before resuming.
inline long hypercall(unsigned long nr, unsigned long a0 = 0, unsigned long a1 = 0,
                      unsigned long a2 = 0, unsigned long a3 = 0, unsigned long a4 = 0) {
  register unsigned long r10 asm("r10") = a2;
  register unsigned long r8 asm("r8") = a3;
  register unsigned long r9 asm("r9") = a4;
  unsigned long rax = nr;
  asm volatile("outl %%eax, %%dx"
               : "+a"(rax)
               : "d"((unsigned short)GEARS_DOORBELL_PORT), "D"(a0), "S"(a1), "r"(r10), "r"(r8),
                 "r"(r9)
               : "memory");
  return (long)rax;
}

}  // namespace gears::kernel
#endif
