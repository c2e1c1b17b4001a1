// FIFO: requests in arrival order, the disk never waits.
#include <deque>

#include "disk/scheduler_impl.h"

namespace gears::vmm::disk {
namespace {

class Fifo final : public DiskScheduler {
 public:
  void add(const DiskRequest& r, uint64_t) override { q_.push_back(r); }
  Decision next(uint64_t) override {
    if (q_.empty()) return {};
    Decision d{q_.front(), 0};
    q_.pop_front();
    return d;
  }
  void completed(const DiskRequest&, uint64_t) override {}
  void forget(uint64_t) override {}
  size_t pending() const override { return q_.size(); }
  SchedulerStats stats() const override { return {}; }

 private:
  std::deque<DiskRequest> q_;
};

}  // namespace

std::unique_ptr<DiskScheduler> make_fifo_scheduler() { return std::make_unique<Fifo>(); }

}  // namespace gears::vmm::disk
