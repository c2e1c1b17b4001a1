// deploy::GuestInjector on top of the borrow engine: each operation is one or more Jobs whose
// chains (guest_chains.h) run in borrowed guest threads; the calling (control) thread waits.
//
// load_library, in three moves:
//   1. the guest's own process list (/proc: pid, exe, mapped libraries, libc's base), read by
//      any borrowed thread;
//   2. a LibraryJob offered every *safe* syscall entry (the thread waits for I/O or time and
//      holds no libc lock): getpid() names the process; a target gets dlopen + attach;
//   3. targets not seen after a short wait are nudged with SIGSTOP+SIGCONT from another
//      process: a thread blocked in read() restarts its call and so reaches the stub.
#pragma once

#include <functional>
#include <memory>

#include "deploy/guest_injector.h"
#include "tools/execve/exec_rules.h"
#include "tools/inject/borrow_engine.h"
#include "tools/inject/guest_chains.h"

namespace gears::vmm::inject {

struct InjectorHooks {
  // Makes sure syscalls reach the stub (arms LSTAR); an error says why they cannot.
  std::function<Expected<void>()> ensure_ready;
  // Environment edits at exec go into the execve tool's rules (owned by the toolset; null:
  // add_exec_env fails).
  execve::ExecRules* exec_rules = nullptr;
};

class EngineInjector : public deploy::GuestInjector {
 public:
  EngineInjector(BorrowEngine& engine, InjectorHooks hooks) : engine_(engine), hooks_(std::move(hooks)) {}

  Expected<void> load_module(std::span<const uint8_t> image, const std::string& params,
                             std::chrono::milliseconds timeout) override;
  Expected<void> unload_module(const std::string& name, std::chrono::milliseconds timeout) override;
  Expected<void> write_file(const std::string& path, std::span<const uint8_t> data, uint32_t mode,
                            std::chrono::milliseconds timeout) override;
  Expected<void> remove_file(const std::string& path, std::chrono::milliseconds timeout) override;
  Expected<std::vector<deploy::ProcessInjection>> load_library(const deploy::ProcessSelector& selector,
                                                               const std::string& path,
                                                               const std::string& attach_symbol,
                                                               std::chrono::milliseconds timeout) override;
  Expected<std::vector<deploy::ProcessInjection>> unload_library(const std::vector<deploy::ProcessInjection>& loaded,
                                                                 const std::string& detach_symbol,
                                                                 std::chrono::milliseconds timeout) override;
  Expected<uint64_t> add_exec_env(const std::string& glob, const execve::EnvEdit& edit) override;
  void remove_exec_env(uint64_t id) override;

  // The guest's process list (for `gearsctl ps --guest`-style views and the selectors).
  Expected<std::vector<GuestProcess>> list_processes(std::chrono::milliseconds timeout);

 private:
  using Factory = std::function<Chain(ChainContext&, const Candidate&)>;
  // Runs one chain in one borrowed thread (any syscall entry `accept` allows).
  Expected<int64_t> run_one(Factory factory, std::chrono::milliseconds timeout, const char* what,
                            std::function<bool(const Candidate&)> accept = {});
  void kick(int64_t pid, std::chrono::milliseconds timeout);

  BorrowEngine& engine_;
  InjectorHooks hooks_;
};

// True when `p` matches the selector (exe_glob: fnmatch over the path and its basename).
bool selector_matches(const deploy::ProcessSelector& sel, const GuestProcess& p);

}  // namespace gears::vmm::inject
