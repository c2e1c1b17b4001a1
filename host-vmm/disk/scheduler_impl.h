// The scheduler implementations behind make_scheduler() (disk/scheduler.h).
#pragma once

#include <memory>

#include "disk/scheduler.h"

namespace gears::vmm::disk {

std::unique_ptr<DiskScheduler> make_fifo_scheduler();
std::unique_ptr<DiskScheduler> make_anticipatory_scheduler(SchedulerParams params, bool by_process);

}  // namespace gears::vmm::disk
