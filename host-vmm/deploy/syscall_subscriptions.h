// Syscall and process events for services' VMM halves (ServiceHost::on_syscall / on_process),
// added and removed while the guest runs. The toolset calls on_syscall() from its existing
// SyscallExitTool listener and on_process() where process tracking sees an exec or an exit;
// both run on vCPU threads and only read an immutable snapshot of the subscriptions, which
// add()/remove() (control thread) replace under a lock.
//
// A subscription holds its syscall numbers in the SyscallExitTool (acquire/release, counted,
// so `gearsctl intercept N off` cannot switch off what a service needs).
// Only entries are delivered (SyscallEvent.is_exit false): return events carry no registers.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "core/guest_memory.h"
#include "gears/expected.h"
#include "gears/vmm/service_host.h"
#include "tools/introspect/vcpu_regs.h"
#include "tools/syscall_exit/syscall_exit_tool.h"

namespace gears::vmm::deploy {

class SyscallSubscriptions {
 public:
  // `exits` null: this gears-vmm has no syscall exiting; add_syscalls() then fails.
  explicit SyscallSubscriptions(syscall_exit::SyscallExitTool* exits) : exits_(exits) {}
  ~SyscallSubscriptions();

  // Process events exist only with process tracking; the toolset says whether it is on.
  void set_process_events(bool available) { process_events_.store(available); }

  Expected<uint64_t> add_syscalls(const std::string& owner, std::span<const uint32_t> numbers, SyscallHandler handler);
  Expected<uint64_t> add_process(const std::string& owner, ProcessHandler handler);
  void remove(uint64_t id);
  void remove_owner(const std::string& owner);
  size_t count(const std::string& owner) const;

  // vCPU thread, from the SyscallExitTool listener: the handlers subscribed to ev.nr.
  void on_syscall(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs);
  // vCPU thread: an exec or exit process tracking inferred (see process_event_of()).
  void on_process(GuestMemory& mem, uint32_t vcpu, VcpuRegs& regs, const ProcessEvent& event);

  uint64_t delivered() const { return delivered_.load(std::memory_order_relaxed); }
  uint64_t handler_errors() const { return errors_.load(std::memory_order_relaxed); }

 private:
  struct Subscription {
    uint64_t id = 0;
    std::string owner;
    std::vector<uint32_t> numbers;  // empty: a process subscription
    std::shared_ptr<const SyscallHandler> on_syscall;
    std::shared_ptr<const ProcessHandler> on_process;
  };
  using Table = std::vector<Subscription>;

  std::shared_ptr<const Table> snapshot() const;
  void replace(std::shared_ptr<const Table> next);  // under mu_
  uint64_t insert(Subscription s);                   // gives it an id
  void remove_where(const std::function<bool(const Subscription&)>& gone);  // releases their numbers

  syscall_exit::SyscallExitTool* exits_;
  std::atomic<bool> process_events_{false};
  mutable std::mutex mu_;
  std::shared_ptr<const Table> table_ = std::make_shared<const Table>();
  std::atomic<size_t> size_{0};  // lets the vCPU path skip the lock when nobody subscribed
  uint64_t next_id_ = 1;
  std::atomic<uint64_t> delivered_{0}, errors_{0};
};

// The process event a syscall entry means, for tools that track processes: execve/execveat
// (the new image's name: the file name's last component, as the kernel's comm, 15 bytes) or
// exit_group. `pid` as process tracking knows it (-1: unknown).
std::optional<ProcessEvent> process_event_of(const syscall_exit::SyscallEvent& ev, const std::string& exec_filename,
                                             int64_t pid);

}  // namespace gears::vmm::deploy
