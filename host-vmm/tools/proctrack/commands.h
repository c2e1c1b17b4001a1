// proctrack's control commands and the lock that lets vCPU threads and the control thread
// share one tracker.
//   {"cmd":"processes"[,"all":true]} -> {"processes":[{id,cr3,pid,ppid,parent_id,exe,state,
//                                         created_ns,exited_ns,execs,syscalls,threads}],
//                                        "counters":{created,execs,exited,vanished,dropped}}
//   {"cmd":"process","pid":N | "cr3":N} -> {"process":{... + "syscall_counts":{"nr":count}}}
//   stats section "proctrack": the counters.
#pragma once

#include <mutex>
#include <utility>

#include "control/command_registry.h"
#include "gears/expected.h"
#include "tools/proctrack/process_tracker.h"

namespace gears::vmm::proctrack {

class SharedTracker {
 public:
  explicit SharedTracker(TrackerConfig config = {}) : tracker_(config) {}
  template <class F>
  auto with(F&& f) {
    std::lock_guard lock(mu_);
    return std::forward<F>(f)(tracker_);
  }

 private:
  std::mutex mu_;
  ProcessTracker tracker_;
};

control::Json to_json(const ProcessInfo& p, bool with_counts = false);
control::Json to_json(const TrackerCounters& c);

// `tracker` must outlive the registry's use of the commands.
Expected<void> register_commands(control::CommandRegistry& registry, SharedTracker& tracker);

}  // namespace gears::vmm::proctrack
