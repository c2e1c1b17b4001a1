// Both edits of one execve/execveat at once: the environment edits and the argument edits the
// rules (exec_rules.h) give for its file, applied to one call. Each array whose contents change
// is rewritten (exec_arrays.h): envp nearest the stack pointer, argv below it, no overlap; the
// registers change only when both were written.
#pragma once

#include <cstdint>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/argv_inject.h"
#include "tools/execve/env_inject.h"

namespace gears::vmm::execve {

struct ExecEdits {
  std::vector<EnvEdit> env;
  std::vector<ArgvEdit> argv;
  bool empty() const { return env.empty() && argv.empty(); }
};

struct ExecInjection {
  // The arrays the call now points at (new, or as they were when unchanged; 0 where no edit of
  // that kind was given or the caller passed NULL and it stayed empty).
  uint64_t envp = 0, argv = 0;
  bool env_rewritten = false, argv_rewritten = false;
};

// Applies `edits` to the call in `regs`. An array whose edits change nothing is left alone.
Expected<ExecInjection> inject_exec(introspect::AddressSpace& as, VcpuRegs& regs, const ExecEdits& edits,
                                    const ExecveLimits& limits = {});

}  // namespace gears::vmm::execve
