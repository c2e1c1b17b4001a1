#include "tools/execve/exec_inject.h"

namespace gears::vmm::execve {

Expected<ExecInjection> inject_exec(introspect::AddressSpace& as, VcpuRegs& regs, const ExecEdits& edits,
                                    const ExecveLimits& limits) {
  ExecInjection out;
  std::vector<ArrayRewrite> rewrites;
  // Everything is read before anything is written; an array no edit touches is not read.
  if (!edits.env.empty()) {
    auto envp = read_array_arg(as, regs, ExecArray::kEnvp, limits);
    if (!envp) return fail(envp.error());
    out.envp = envp->at;
    auto env = apply_env_edits(envp->strings, edits.env);
    if (env != envp->strings) rewrites.push_back({ExecArray::kEnvp, std::move(*envp), std::move(env)});
  }
  if (!edits.argv.empty()) {
    auto argv = read_array_arg(as, regs, ExecArray::kArgv, limits);
    if (!argv) return fail(argv.error());
    out.argv = argv->at;
    auto args = apply_argv_edits(argv->strings, edits.argv);
    if (args != argv->strings) rewrites.push_back({ExecArray::kArgv, std::move(*argv), std::move(args)});
  }
  if (rewrites.empty()) return out;
  auto at = rewrite_exec_arrays(as, regs, rewrites, limits);
  if (!at) return fail(at.error());
  for (size_t i = 0; i < rewrites.size(); ++i) {
    if (rewrites[i].which == ExecArray::kEnvp) out.envp = (*at)[i], out.env_rewritten = true;
    else out.argv = (*at)[i], out.argv_rewritten = true;
  }
  return out;
}

}  // namespace gears::vmm::execve
