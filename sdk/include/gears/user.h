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

namespace detail {
// Hidden, so its address lies in the object that includes this header (the user half).
__attribute__((visibility("hidden"))) inline void user_half_marker() {}

// Whether `address` belongs to the same loaded object as this code.
__attribute__((visibility("hidden"))) inline bool in_user_half(const void* address) {
  Dl_info mine{}, theirs{};
  if (!dladdr(reinterpret_cast<const void*>(&user_half_marker), &mine)) return false;
  return dladdr(address, &theirs) && theirs.dli_fbase == mine.dli_fbase;
}
}  // namespace detail

// The next definition of an interposed symbol (the one the process would have called without
// the service): `gears::user::original<decltype(&my_open)>("open")(path, flags, mode)`.
// Looked up once per call site; nullptr if the symbol does not exist further down.
// RTLD_NEXT searches the objects after the user half: with LD_PRELOAD, the whole process after
// it; when dlopen()ed into a running process (user_link.h), its own dependencies, libc among
// them. Should that miss, the global scope is asked, but never for the user half's own export
// (calling it would recurse).
template <class Fn>
Fn original(const char* symbol) {
  void* next = dlsym(RTLD_NEXT, symbol);
  if (!next || detail::in_user_half(next)) {
    next = dlsym(RTLD_DEFAULT, symbol);
    if (next && detail::in_user_half(next)) next = nullptr;
  }
  return reinterpret_cast<Fn>(next);
}

}  // namespace gears::user
