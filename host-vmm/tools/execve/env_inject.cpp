#include "tools/execve/env_inject.h"

#include "tools/execve/exec_inject.h"

namespace gears::vmm::execve {

std::vector<std::string> apply_env_edits(std::vector<std::string> envp, const std::vector<EnvEdit>& edits) {
  for (const auto& ed : edits) {
    const std::string prefix = ed.name + "=";
    bool done = false;
    for (auto it = envp.begin(); it != envp.end();) {
      if (it->rfind(prefix, 0) != 0) {
        ++it;
        continue;
      }
      if (done) {  // a duplicate: the loader would pick one of them; keep only ours
        it = envp.erase(it);
        continue;
      }
      std::string old = it->substr(prefix.size());
      *it = prefix + (ed.mode == EnvEdit::Mode::kPrepend && !old.empty() ? ed.value + ":" + old : ed.value);
      done = true;
      ++it;
    }
    if (!done) envp.push_back(prefix + ed.value);
  }
  return envp;
}

Expected<uint64_t> inject_env(introspect::AddressSpace& as, VcpuRegs& regs, const std::vector<EnvEdit>& edits,
                              ExecveLimits limits) {
  auto r = inject_exec(as, regs, {edits, {}}, limits);
  if (!r) return fail(r.error());
  return r->envp;
}

}  // namespace gears::vmm::execve
