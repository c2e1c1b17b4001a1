// The execve hook's environment edits: add or change variables (e.g. LD_PRELOAD) in the envp of
// an execve/execveat before the kernel sees it. Where the new array goes: exec_arrays.h (below
// the user stack under the red zone; unchanged variables keep their original string pointers).
#pragma once

#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/exec_arrays.h"

namespace gears::vmm::execve {

struct EnvEdit {
  enum class Mode { kSet, kPrepend };  // kPrepend: "NAME=value:old" (LD_PRELOAD, PATH style)
  std::string name;
  std::string value;
  Mode mode = Mode::kSet;
  bool operator==(const EnvEdit&) const = default;
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
