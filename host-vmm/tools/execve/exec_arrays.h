// The execve hook's memory side: read an execve/execveat call's filename, argv and envp from the
// caller's memory, and rewrite its string-array arguments (argv, envp) before the kernel sees
// them. Runs at the selective-exit stub's exit for execve/execveat, on the calling vCPU.
// env_inject.h and argv_inject.h say *what* the new arrays hold; this file says *where* they go.
//
// Layout: everything new is written below the user stack pointer, under the 128-byte red zone
// (exec throws the old stack away, so nothing live is overwritten), with user-write access (a
// guard page or an unmapped stack fails cleanly). Per rewritten array, downwards: the strings
// that must be copied, then its 16-byte aligned NULL-terminated pointer array; a second array
// goes below the first, so the two never overlap. A new string equal to one the caller passed in
// the same array keeps the caller's pointer. All arrays are written before any register changes,
// and registers change only when every write succeeded (bytes already written below the stack
// are dead memory). Sizes are bounded: count/string/total as the reads (`ExecveLimits::strings`),
// all arrays together by `max_stack_use`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/introspect/address_space.h"
#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm::execve {

struct ExecveCall {
  std::string filename;
  std::vector<std::string> argv;
  std::vector<std::string> envp;
};

struct ExecveLimits {
  uint64_t max_path = 4096;                               // PATH_MAX
  introspect::AddressSpace::StringArrayLimits strings{};  // MAX_ARG_STRLEN-ish bounds, old and new arrays
  uint64_t max_stack_use = 256 * 1024;                    // how far below RSP - red zone we may write
};

inline constexpr uint64_t kRedZone = 128;

// Reads execve(filename, argv, envp) (RDI, RSI, RDX) or execveat(dirfd, filename, argv, envp)
// (RSI, RDX, R10), chosen by EAX. A NULL argv/envp reads as empty (the kernel allows it).
Expected<ExecveCall> read_execve(const introspect::AddressSpace& as, const VcpuRegs& regs,
                                 ExecveLimits limits = {});

enum class ExecArray { kArgv, kEnvp };
const char* to_string(ExecArray which);

// One string-array argument as the caller passed it: the pointers and the strings they point
// to, read once (so the two agree). `at` is the array's address (0: NULL, empty).
struct ArrayArg {
  uint64_t at = 0;
  std::vector<uint64_t> ptrs;
  std::vector<std::string> strings;
};
Expected<ArrayArg> read_array_arg(const introspect::AddressSpace& as, const VcpuRegs& regs, ExecArray which,
                                  const ExecveLimits& limits = {});

// The new contents of one array argument. `old` is what read_array_arg returned for it (its
// strings' pointers are reused for equal new strings).
struct ArrayRewrite {
  ExecArray which;
  ArrayArg old;
  std::vector<std::string> strings;
};

// Writes every rewrite's array (the first nearest the stack pointer, each next one below the
// previous) and then repoints the argument registers (execve: argv RSI, envp RDX; execveat: argv
// RDX, envp R10). Returns the new array addresses, in the order given. Registers change only on
// success.
Expected<std::vector<uint64_t>> rewrite_exec_arrays(introspect::AddressSpace& as, VcpuRegs& regs,
                                                    const std::vector<ArrayRewrite>& rewrites,
                                                    const ExecveLimits& limits = {});

}  // namespace gears::vmm::execve
