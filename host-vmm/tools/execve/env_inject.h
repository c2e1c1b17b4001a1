// The execve hook's data side: read an execve call's filename/argv/envp from the caller's
// memory, and add or change environment variables (e.g. LD_PRELOAD) before the kernel sees
// them. Runs at the selective-exit stub's exit for execve/execveat, on the calling vCPU.
//
// The new envp array and the new strings are written below the user stack pointer, under the
// 128-byte red zone: exec throws the old stack away, so nothing live is overwritten, and writes
// use user-write access so a guard page or an unmapped stack fails cleanly: the registers are
// unchanged (bytes already written below the stack are dead memory).
// Unchanged variables keep their original string pointers; only new/edited strings are copied.
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
  uint64_t max_path = 4096;                      // PATH_MAX
  introspect::AddressSpace::StringArrayLimits strings{};  // MAX_ARG_STRLEN-ish bounds
  uint64_t max_stack_use = 256 * 1024;           // how far below RSP we may write
};

// Reads execve(filename, argv, envp) (RDI, RSI, RDX) or execveat(dirfd, filename, argv, envp)
// (RSI, RDX, R10), chosen by EAX. A NULL argv/envp reads as empty (the kernel allows it).
Expected<ExecveCall> read_execve(const introspect::AddressSpace& as, const VcpuRegs& regs,
                                 ExecveLimits limits = {});

struct EnvEdit {
  enum class Mode { kSet, kPrepend };  // kPrepend: "NAME=value:old" (LD_PRELOAD, PATH style)
  std::string name;
  std::string value;
  Mode mode = Mode::kSet;
};

// envp with the edits applied: kSet replaces every NAME= entry (first kept, rest dropped) or
// appends one; kPrepend puts value before an existing value with ':' (or sets it).
std::vector<std::string> apply_env_edits(std::vector<std::string> envp, const std::vector<EnvEdit>& edits);

// Applies `edits` to the envp of the execve/execveat in `regs`: writes the new array below the
// stack and repoints the envp register (RDX or R10). Registers change only on success.
// Returns the new envp address.
Expected<uint64_t> inject_env(introspect::AddressSpace& as, VcpuRegs& regs, const std::vector<EnvEdit>& edits,
                              ExecveLimits limits = {});

}  // namespace gears::vmm::execve
