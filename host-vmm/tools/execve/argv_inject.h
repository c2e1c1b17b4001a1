// The execve hook's argument edits: add, replace or remove arguments in the argv of an
// execve/execveat before the kernel sees it (GEARS' execve tool rewrote argv as well as the
// environment). Where the new array goes: exec_arrays.h (below the user stack under the red
// zone; unchanged arguments keep their original string pointers).
#pragma once

#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/exec_arrays.h"

namespace gears::vmm::execve {

struct ArgvEdit {
  enum class Op {
    kAppend,       // `arg` after the last argument
    kInsertFirst,  // `arg` right after argv[0]
    kReplace,      // every argument (argv[1..]) equal to `arg` becomes `with`
    kRemove,       // every argument (argv[1..]) equal to `arg` is dropped
  };
  Op op = Op::kAppend;
  std::string arg;
  std::string with;  // kReplace only
  bool operator==(const ArgvEdit&) const = default;
};

// argv with the edits applied, in order. argv[0] (the program's name for itself) is never
// replaced or removed; an empty argv gets an empty argv[0] before an append or insert (as the
// kernel itself gives a program started with an empty argv), so the new arguments are arguments.
std::vector<std::string> apply_argv_edits(std::vector<std::string> argv, const std::vector<ArgvEdit>& edits);

// Applies `edits` to the argv of the execve/execveat in `regs`: writes the new array below the
// stack and repoints the argv register (RSI or RDX). Registers change only on success.
// Returns the new argv address.
Expected<uint64_t> inject_argv(introspect::AddressSpace& as, VcpuRegs& regs, const std::vector<ArgvEdit>& edits,
                               ExecveLimits limits = {});

}  // namespace gears::vmm::execve
