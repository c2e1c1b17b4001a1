#include "tools/execve/env_inject.h"

#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::execve {

using introspect::Access;
namespace sys = proctrack::linux_x86_64;

namespace {
constexpr uint64_t kRedZone = 128;

struct Regs {
  uint64_t filename, argv, envp;
  uint64_t VcpuRegs::*envp_reg;
};

Expected<Regs> execve_regs(const VcpuRegs& regs) {
  const auto nr = static_cast<uint32_t>(regs.rax);
  if (nr == sys::kExecve) return Regs{regs.rdi, regs.rsi, regs.rdx, &VcpuRegs::rdx};
  if (nr == sys::kExecveat) return Regs{regs.rsi, regs.rdx, regs.r10, &VcpuRegs::r10};
  return fail("syscall " + std::to_string(nr) + " is not execve or execveat");
}
}  // namespace

Expected<ExecveCall> read_execve(const introspect::AddressSpace& as, const VcpuRegs& regs, ExecveLimits limits) {
  auto r = execve_regs(regs);
  if (!r) return fail(r.error());
  ExecveCall call;
  auto file = as.read_string(r->filename, limits.max_path, Access::user_read());
  if (!file) return fail("execve filename: " + file.error().message);
  call.filename = std::move(*file);
  if (r->argv) {
    auto a = as.read_string_array(r->argv, limits.strings, Access::user_read());
    if (!a) return fail("execve argv: " + a.error().message);
    call.argv = std::move(*a);
  }
  if (r->envp) {
    auto e = as.read_string_array(r->envp, limits.strings, Access::user_read());
    if (!e) return fail("execve envp: " + e.error().message);
    call.envp = std::move(*e);
  }
  return call;
}

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
  auto r = execve_regs(regs);
  if (!r) return fail(r.error());
  std::vector<uint64_t> old_ptrs;
  std::vector<std::string> old_env;
  if (r->envp) {
    auto p = as.read_pointer_array(r->envp, limits.strings.max_count, Access::user_read());
    if (!p) return fail("execve envp: " + p.error().message);
    old_ptrs = std::move(*p);
    auto e = as.read_string_array(r->envp, limits.strings, Access::user_read());
    if (!e) return fail("execve envp: " + e.error().message);
    old_env = std::move(*e);
  }
  const std::vector<std::string> new_env = apply_env_edits(old_env, edits);

  // Which entries can keep their old pointer: the same string at the same name position.
  std::vector<uint64_t> ptrs(new_env.size(), 0);
  std::vector<bool> fresh(new_env.size(), false);
  uint64_t copy_bytes = 0;
  for (size_t i = 0; i < new_env.size(); ++i) {
    if (i < old_env.size() && old_env[i] == new_env[i]) {
      ptrs[i] = old_ptrs[i];
    } else {
      fresh[i] = true;
      copy_bytes += new_env[i].size() + 1;
    }
  }
  const uint64_t array_bytes = (new_env.size() + 1) * 8;
  const uint64_t need = copy_bytes + array_bytes + 16 + 8;  // + alignment slack
  if (need > limits.max_stack_use)
    return fail("new environment needs " + std::to_string(need) + " bytes below the stack, more than " +
                std::to_string(limits.max_stack_use));
  if (regs.rsp < need + kRedZone || !introspect::is_canonical(regs.rsp))
    return fail("user stack pointer " + introspect::hex(regs.rsp) + " leaves no room for the new environment");

  // Layout, downwards from RSP - red zone: new strings, then the 16-byte aligned array.
  uint64_t at = regs.rsp - kRedZone - copy_bytes;
  const uint64_t strings_at = at;
  for (size_t i = 0; i < new_env.size(); ++i) {
    if (!fresh[i]) continue;
    ptrs[i] = at;
    at += new_env[i].size() + 1;
  }
  ptrs.push_back(0);
  const uint64_t array_at = (strings_at - array_bytes) & ~uint64_t{15};

  for (size_t i = 0; i < new_env.size(); ++i) {
    if (!fresh[i]) continue;  // an old string, left where it is
    const std::string& s = new_env[i];
    GEARS_TRY(as.write(ptrs[i], std::span(reinterpret_cast<const uint8_t*>(s.c_str()), s.size() + 1),
                       Access::user_write()));
  }
  GEARS_TRY(as.write(array_at, std::span(reinterpret_cast<const uint8_t*>(ptrs.data()), array_bytes),
                     Access::user_write()));
  regs.*(r->envp_reg) = array_at;
  return array_at;
}

}  // namespace gears::vmm::execve
