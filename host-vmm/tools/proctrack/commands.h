// proctrack's control commands and the lock that lets vCPU threads and the control thread
// share one tracker.
//   {"cmd":"processes"[,"all":true]} -> {"processes":[{id,cr3,pid,ppid,parent_id,exe,state,
//                                         created_ns,exited_ns,execs,syscalls,threads,
//                                         shared_address_space}],
//                                        "counters":{created,execs,exec_moved,exited,vanished,
//                                        dropped,events,shared_address_space,unseen,awaiting_child}}
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
// `refresh` (optional) runs under the tracker's lock before each query answers: the VMM's
// chance to reap address spaces that are gone (a process killed by a signal makes no exit
// call).
Expected<void> register_commands(control::CommandRegistry& registry, SharedTracker& tracker,
                                 std::function<void(ProcessTracker&)> refresh = {});

}  // namespace gears::vmm::proctrack
