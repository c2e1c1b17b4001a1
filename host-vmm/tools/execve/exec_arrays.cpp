#include "tools/execve/exec_arrays.h"

#include <algorithm>
#include <string_view>
#include <unordered_map>

#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::execve {

using introspect::Access;
namespace sys = proctrack::linux_x86_64;

namespace {
// Where execve / execveat keep their arguments.
struct CallRegs {
  uint64_t VcpuRegs::*filename;
  uint64_t VcpuRegs::*argv;
  uint64_t VcpuRegs::*envp;
  uint64_t VcpuRegs::*of(ExecArray which) const { return which == ExecArray::kArgv ? argv : envp; }
};

Expected<CallRegs> call_regs(const VcpuRegs& regs) {
  const auto nr = static_cast<uint32_t>(regs.rax);
  if (nr == sys::kExecve) return CallRegs{&VcpuRegs::rdi, &VcpuRegs::rsi, &VcpuRegs::rdx};
  if (nr == sys::kExecveat) return CallRegs{&VcpuRegs::rsi, &VcpuRegs::rdx, &VcpuRegs::r10};
  return fail("syscall " + std::to_string(nr) + " is not execve or execveat");
}

// One array as it will be written: its address and the pointer of each string.
struct Placed {
  uint64_t array_at = 0;
  std::vector<uint64_t> ptrs;        // with the closing NULL
  std::vector<size_t> fresh;         // indices of the strings to copy
};
}  // namespace

const char* to_string(ExecArray which) { return which == ExecArray::kArgv ? "argv" : "envp"; }

Expected<ArrayArg> read_array_arg(const introspect::AddressSpace& as, const VcpuRegs& regs, ExecArray which,
                                  const ExecveLimits& limits) {
  auto r = call_regs(regs);
  if (!r) return fail(r.error());
  ArrayArg a;
  a.at = regs.*(r->of(which));
  if (a.at == 0) return a;
  const std::string what = std::string("execve ") + to_string(which) + ": ";
  auto p = as.read_pointer_array(a.at, limits.strings.max_count, Access::user_read());
  if (!p) return fail(what + p.error().message);
  a.ptrs = std::move(*p);
  // The strings of exactly these pointers (as read_string_array, but without reading the
  // pointer array twice: another vCPU could change it in between).
  const auto& lim = limits.strings;
  uint64_t total = 0;
  a.strings.reserve(a.ptrs.size());
  for (uint64_t ptr : a.ptrs) {
    const uint64_t room = lim.max_total - std::min(total, lim.max_total);
    if (room == 0)
      return fail(what + "guest string array at " + introspect::hex(a.at) + " exceeds " +
                  std::to_string(lim.max_total) + " bytes");
    auto s = as.read_string(ptr, std::min(lim.max_string, room - 1), Access::user_read());
    if (!s) return fail(what + s.error().message);
    total += s->size() + 1;
    a.strings.push_back(std::move(*s));
  }
  return a;
}

Expected<ExecveCall> read_execve(const introspect::AddressSpace& as, const VcpuRegs& regs, ExecveLimits limits) {
  auto r = call_regs(regs);
  if (!r) return fail(r.error());
  ExecveCall call;
  auto file = as.read_string(regs.*(r->filename), limits.max_path, Access::user_read());
  if (!file) return fail("execve filename: " + file.error().message);
  call.filename = std::move(*file);
  auto argv = read_array_arg(as, regs, ExecArray::kArgv, limits);
  if (!argv) return fail(argv.error());
  call.argv = std::move(argv->strings);
  auto envp = read_array_arg(as, regs, ExecArray::kEnvp, limits);
  if (!envp) return fail(envp.error());
  call.envp = std::move(envp->strings);
  return call;
}

Expected<std::vector<uint64_t>> rewrite_exec_arrays(introspect::AddressSpace& as, VcpuRegs& regs,
                                                    const std::vector<ArrayRewrite>& rewrites,
                                                    const ExecveLimits& limits) {
  auto r = call_regs(regs);
  if (!r) return fail(r.error());
  std::string names;
  for (const auto& rw : rewrites) names += (names.empty() ? "" : " and ") + std::string(to_string(rw.which));
  if (regs.rsp < kRedZone || !introspect::is_canonical(regs.rsp))
    return fail("user stack pointer " + introspect::hex(regs.rsp) + " leaves no room for the new " + names);
  const uint64_t top = regs.rsp - kRedZone;

  // Plan every array first (nothing written yet), each below the one before.
  std::vector<Placed> placed;
  uint64_t at = top;
  for (const auto& rw : rewrites) {
    const auto& lim = limits.strings;
    const std::string what = std::string("the new ") + to_string(rw.which);
    if (rw.strings.size() > lim.max_count)
      return fail(what + " has " + std::to_string(rw.strings.size()) + " strings, more than " +
                  std::to_string(lim.max_count));
    std::unordered_map<std::string_view, uint64_t> old;  // string -> the caller's pointer to it
    for (size_t i = 0; i < rw.old.strings.size() && i < rw.old.ptrs.size(); ++i)
      old.emplace(rw.old.strings[i], rw.old.ptrs[i]);
    Placed p;
    p.ptrs.resize(rw.strings.size() + 1, 0);
    uint64_t total = 0, copy_bytes = 0;
    for (size_t i = 0; i < rw.strings.size(); ++i) {
      const std::string& s = rw.strings[i];
      if (s.size() > lim.max_string)
        return fail(what + ": a string of " + std::to_string(s.size()) + " bytes, more than " +
                    std::to_string(lim.max_string));
      total += s.size() + 1;
      if (auto it = old.find(s); it != old.end()) {
        p.ptrs[i] = it->second;
      } else {
        p.fresh.push_back(i);
        copy_bytes += s.size() + 1;
      }
    }
    if (total > lim.max_total)
      return fail(what + " holds " + std::to_string(total) + " bytes, more than " + std::to_string(lim.max_total));
    const uint64_t array_bytes = p.ptrs.size() * 8;
    if (at < copy_bytes + array_bytes + 16)
      return fail("user stack pointer " + introspect::hex(regs.rsp) + " leaves no room for the new " + names);
    uint64_t s_at = at - copy_bytes;  // strings, upwards from here; the array below them
    p.array_at = (s_at - array_bytes) & ~uint64_t{15};
    if (top - p.array_at > limits.max_stack_use)
      return fail("the new " + names + " need " + std::to_string(top - p.array_at) +
                  " bytes below the stack, more than " + std::to_string(limits.max_stack_use));
    for (size_t i : p.fresh) {
      p.ptrs[i] = s_at;
      s_at += rw.strings[i].size() + 1;
    }
    at = p.array_at;
    placed.push_back(std::move(p));
  }

  // Write everything, then the registers.
  std::vector<uint64_t> out;
  for (size_t k = 0; k < rewrites.size(); ++k) {
    const Placed& p = placed[k];
    for (size_t i : p.fresh) {
      const std::string& s = rewrites[k].strings[i];
      GEARS_TRY(as.write(p.ptrs[i], std::span(reinterpret_cast<const uint8_t*>(s.c_str()), s.size() + 1),
                         Access::user_write()));
    }
    GEARS_TRY(as.write(p.array_at,
                       std::span(reinterpret_cast<const uint8_t*>(p.ptrs.data()), p.ptrs.size() * sizeof(uint64_t)),
                       Access::user_write()));
    out.push_back(p.array_at);
  }
  for (size_t k = 0; k < rewrites.size(); ++k) regs.*(r->of(rewrites[k].which)) = placed[k].array_at;
  return out;
}

}  // namespace gears::vmm::execve
