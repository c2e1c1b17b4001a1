// What deploy needs from the guest, without knowing how: the injection engine
// (tools/inject, which borrows guest threads at syscall boundaries) implements it; the service
// manager (deploy/service_manager) uses it. Every call blocks the calling (control) thread until
// the guest has done the work or `timeout` passed; vCPU threads keep running guest work.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/env_inject.h"

namespace gears::vmm::deploy {

// Which running processes a user-half injection targets.
struct ProcessSelector {
  enum class Kind { pid, exe_glob, maps_library } kind = Kind::exe_glob;
  int64_t pid = -1;     // Kind::pid
  std::string pattern;  // exe_glob: fnmatch over the exe path and its basename;
                        // maps_library: a library soname/basename, e.g. "libc.so.6"
  std::vector<int64_t> exclude_pids;  // never these (already injected by another selector)

  static ProcessSelector of(Kind kind, int64_t pid, std::string pattern) {
    ProcessSelector s;
    s.kind = kind;
    s.pid = pid;
    s.pattern = std::move(pattern);
    return s;
  }
};

// The outcome for one process.
struct ProcessInjection {
  int64_t pid = -1;
  uint64_t cr3 = 0;
  std::string exe;
  bool ok = false;
  std::string error;      // when !ok: what the guest or the engine said
  uint64_t handle = 0;    // dlopen handle in that process (for unload)
  double latency_ms = 0;  // from the borrow to the thread's resumption
};

class GuestInjector {
 public:
  virtual ~GuestInjector() = default;

  // init_module(image, len, params) in a borrowed privileged process. The kernel's refusal
  // (-ENOEXEC for a bad vermagic, -ENOENT for unknown symbols, ...) comes back as an error
  // naming the errno.
  virtual Expected<void> load_module(std::span<const uint8_t> image, const std::string& params,
                                     std::chrono::milliseconds timeout) = 0;
  // delete_module(name, O_NONBLOCK).
  virtual Expected<void> unload_module(const std::string& name, std::chrono::milliseconds timeout) = 0;

  // Creates (or replaces) a file in the guest's file system with open/write/close in a
  // borrowed process; `mode` as for open(2).
  virtual Expected<void> write_file(const std::string& path, std::span<const uint8_t> data, uint32_t mode,
                                    std::chrono::milliseconds timeout) = 0;
  virtual Expected<void> remove_file(const std::string& path, std::chrono::milliseconds timeout) = 0;

  // In every running process `selector` matches: dlopen(path, RTLD_NOW) with the process's own
  // loader, then `attach_symbol` (a `int fn(void)` in the library, skipped when empty or
  // absent), then resume the thread exactly where it was. One result per matched process.
  virtual Expected<std::vector<ProcessInjection>> load_library(const ProcessSelector& selector,
                                                               const std::string& path,
                                                               const std::string& attach_symbol,
                                                               std::chrono::milliseconds timeout) = 0;
  // The reverse for the processes of an earlier load_library: `detach_symbol`, then dlclose.
  virtual Expected<std::vector<ProcessInjection>> unload_library(const std::vector<ProcessInjection>& loaded,
                                                                 const std::string& detach_symbol,
                                                                 std::chrono::milliseconds timeout) = 0;

  // New processes: an environment edit at every execve whose file name matches `glob` (a rule
  // in the execve tool's ExecRules; kPrepend prepends with ':', kSet sets). Returns an id for
  // remove_exec_env.
  virtual Expected<uint64_t> add_exec_env(const std::string& glob, const execve::EnvEdit& edit) = 0;
  virtual void remove_exec_env(uint64_t id) = 0;
};

}  // namespace gears::vmm::deploy
