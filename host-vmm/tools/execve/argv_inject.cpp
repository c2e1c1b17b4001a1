#include "tools/execve/argv_inject.h"

#include <algorithm>

#include "tools/execve/exec_inject.h"

namespace gears::vmm::execve {

std::vector<std::string> apply_argv_edits(std::vector<std::string> argv, const std::vector<ArgvEdit>& edits) {
  using Op = ArgvEdit::Op;
  for (const auto& ed : edits) {
    switch (ed.op) {
      case Op::kAppend:
      case Op::kInsertFirst:
        if (argv.empty()) argv.emplace_back();
        argv.insert(ed.op == Op::kAppend ? argv.end() : argv.begin() + 1, ed.arg);
        break;
      case Op::kReplace:
        for (size_t i = 1; i < argv.size(); ++i)
          if (argv[i] == ed.arg) argv[i] = ed.with;
        break;
      case Op::kRemove:
        if (argv.size() > 1) argv.erase(std::remove(argv.begin() + 1, argv.end(), ed.arg), argv.end());
        break;
    }
  }
  return argv;
}

Expected<uint64_t> inject_argv(introspect::AddressSpace& as, VcpuRegs& regs, const std::vector<ArgvEdit>& edits,
                               ExecveLimits limits) {
  auto r = inject_exec(as, regs, {{}, edits}, limits);
  if (!r) return fail(r.error());
  return r->argv;
}

}  // namespace gears::vmm::execve
