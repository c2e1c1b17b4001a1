// The guest-user half's runtime: the hypercall stub and access to interposed originals.
// Header-only so the user half is one self-contained shared library.
#pragma once

#include <dlfcn.h>

#include <cerrno>
#include <cstdint>

#include "gears/abi/hypercall.h"

namespace gears::user {

// Guest user -> VMM (abi/hypercall.h): RAX = GEARS_SYSCALL_NR, RDI = hypercall number,
// arguments in RSI RDX R10 R8 R9; result (or -errno) in RAX. Without gears-vmm the guest
// kernel answers -ENOSYS.
inline long hypercall(std::uint64_t nr, std::uint64_t a0 = 0, std::uint64_t a1 = 0,
                      std::uint64_t a2 = 0, std::uint64_t a3 = 0, std::uint64_t a4 = 0) {
  register std::uint64_t r10 asm("r10") = a2;
  register std::uint64_t r8 asm("r8") = a3;
  register std::uint64_t r9 asm("r9") = a4;
  long rax = GEARS_SYSCALL_NR;
  asm volatile("syscall"
               : "+a"(rax)
               : "D"(nr), "S"(a0), "d"(a1), "r"(r10), "r"(r8), "r"(r9)
               : "rcx", "r11", "memory");
  return rax;
}

// The next definition of an interposed symbol (the one the process would have called without
// the service): `gears::user::original<decltype(&my_open)>("open")(path, flags, mode)`.
// Looked up once per call site; nullptr if the symbol does not exist further down.
template <class Fn>
Fn original(const char* symbol) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, symbol));
}

}  // namespace gears::user
