#include "disk/scheduler.h"

#include <string>

#include "disk/scheduler_impl.h"

namespace gears::vmm::disk {

Expected<SchedulerKind> parse_scheduler_kind(std::string_view name) {
  if (name == "fifo") return SchedulerKind::kFifo;
  if (name == "as") return SchedulerKind::kAnticipatory;
  if (name == "as-anon") return SchedulerKind::kAnticipatoryAnon;
  return fail("unknown disk scheduler '" + std::string(name) + "' (fifo, as, as-anon)");
}

std::string_view to_string(SchedulerKind k) {
  switch (k) {
    case SchedulerKind::kFifo: return "fifo";
    case SchedulerKind::kAnticipatory: return "as";
    case SchedulerKind::kAnticipatoryAnon: return "as-anon";
  }
  return "?";
}

std::unique_ptr<DiskScheduler> make_scheduler(SchedulerKind kind, SchedulerParams params) {
  switch (kind) {
    case SchedulerKind::kFifo: return make_fifo_scheduler();
    case SchedulerKind::kAnticipatory: return make_anticipatory_scheduler(params, /*by_process=*/true);
    case SchedulerKind::kAnticipatoryAnon: return make_anticipatory_scheduler(params, /*by_process=*/false);
  }
  return make_fifo_scheduler();
}

}  // namespace gears::vmm::disk
