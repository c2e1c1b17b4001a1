// Anticipatory scheduling (Iyer & Druschel, SOSP'01; in the VMM with inferred processes:
// Antfarm, ATC'06): see disk/scheduler.h for the policy. The decision to wait rests on a
// history per issuer (per process, or one for everything without identity): the mean "think
// time" from a completion to that issuer's next read, and the mean distance of that read from
// where the previous one ended, both as exponentially weighted averages.
#include <deque>
#include <unordered_map>

#include "disk/scheduler_impl.h"

namespace gears::vmm::disk {
namespace {

// Issuers remembered at most (a guest can make address spaces without end); beyond it the
// histories start over, which only makes the scheduler optimistic for a while.
constexpr size_t kMaxHistories = 4096;
// Samples before a history may veto waiting (until then: wait, optimistically).
constexpr unsigned kMinSamples = 2;

uint64_t distance(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

class Anticipatory final : public DiskScheduler {
 public:
  Anticipatory(SchedulerParams p, bool by_process) : p_(p), by_process_(by_process) {}

  void add(const DiskRequest& r, uint64_t now) override {
    History& h = history(key(r));
    if (!r.write && h.idle) {  // its first read since its last completion: a think-time sample
      sample(h.think_ns, static_cast<double>(now - h.last_done_ns), h.samples);
      sample(h.seek, static_cast<double>(distance(r.sector, h.last_end)), h.samples);
      ++h.samples;
      h.idle = false;
    }
    q_.push_back(r);
  }

  Decision next(uint64_t now) override {
    if (q_.empty()) return {};  // idle: an anticipation stays armed for the next add()
    if (antic_) {
      // The fairness bounds come first: a run past its batch, or a request waiting past its
      // expiry, ends the anticipation even when the awaited read is already here.
      const bool run_over = key_of_run_ == antic_key_ && now - run_start_ >= p_.batch_ns;
      const bool starving = now - q_.front().arrival_ns >= p_.read_expire_ns;
      if (run_over || starving) {
        antic_ = false;
        ++stats_.expired;
        return take(q_.begin(), now);
      }
      for (auto it = q_.begin(); it != q_.end(); ++it) {
        if (it->write || !awaited(*it)) continue;
        antic_ = false;
        if (distance(it->sector, antic_end_) <= p_.near_sectors) {
          ++stats_.hits;
          return take(it, now);
        }
        ++stats_.expired;  // it came, but from afar: no reason to favour it
        break;
      }
      if (antic_) {
        if (now < antic_until_) return {std::nullopt, antic_until_};
        antic_ = false;
        ++stats_.expired;
      }
    }
    return take(q_.begin(), now);
  }

  void completed(const DiskRequest& r, uint64_t now) override {
    const uint64_t k = key(r);
    History& h = history(k);
    h.last_done_ns = now;
    h.last_end = r.end();
    h.idle = true;
    if (r.write || !worth_waiting(k, h)) return;
    antic_ = true;
    antic_key_ = k;
    antic_end_ = r.end();
    antic_until_ = now + p_.window_ns;
    ++stats_.anticipated;
  }

  void forget(uint64_t issuer) override {
    if (!by_process_) return;
    hist_.erase(issuer);
    if (antic_ && antic_key_ == issuer) {
      antic_ = false;
      ++stats_.expired;
    }
  }

  size_t pending() const override { return q_.size(); }
  SchedulerStats stats() const override { return stats_; }

 private:
  struct History {
    uint64_t last_done_ns = 0;
    uint64_t last_end = 0;
    bool idle = false;  // completed, and no read since: the next read is a sample
    double think_ns = 0, seek = 0;
    unsigned samples = 0;
  };

  uint64_t key(const DiskRequest& r) const { return by_process_ ? r.issuer : 0; }

  History& history(uint64_t k) {
    if (hist_.size() >= kMaxHistories && !hist_.count(k)) hist_.clear();
    return hist_[k];
  }

  static void sample(double& avg, double x, unsigned n) { avg = n == 0 ? x : avg * 0.875 + x * 0.125; }

  // Waiting pays only for an issuer that comes back soon and near: a sequential reader.
  bool worth_waiting(uint64_t k, const History& h) const {
    if (by_process_ && k == 0) return false;  // unknown issuer: nobody to wait for
    if (h.samples < kMinSamples) return true;
    return h.think_ns <= static_cast<double>(p_.window_ns) && h.seek <= static_cast<double>(p_.near_sectors);
  }

  // The read that ends the wait: the anticipated process's (by process), or any read near the
  // head (without identity).
  bool awaited(const DiskRequest& r) const {
    return by_process_ ? key(r) == antic_key_ : distance(r.sector, antic_end_) <= p_.near_sectors;
  }

  Decision take(std::deque<DiskRequest>::iterator it, uint64_t now) {
    const DiskRequest r = *it;
    q_.erase(it);
    // A run: consecutive requests of one issuer (by process), or consecutive nearby requests
    // (without identity); `batch` caps how long a run may keep others waiting.
    const uint64_t k = by_process_ ? key(r) : 0;
    const bool continues = k == key_of_run_ && (by_process_ || distance(r.sector, run_end_) <= p_.near_sectors);
    if (!continues) {
      key_of_run_ = k;
      run_start_ = now;
    }
    run_end_ = r.end();
    return {r, 0};
  }

  const SchedulerParams p_;
  const bool by_process_;
  std::deque<DiskRequest> q_;
  std::unordered_map<uint64_t, History> hist_;
  bool antic_ = false;
  uint64_t antic_key_ = 0, antic_end_ = 0, antic_until_ = 0;
  uint64_t key_of_run_ = ~uint64_t{0}, run_start_ = 0, run_end_ = 0;
  SchedulerStats stats_;
};

}  // namespace

std::unique_ptr<DiskScheduler> make_anticipatory_scheduler(SchedulerParams params, bool by_process) {
  return std::make_unique<Anticipatory>(params, by_process);
}

}  // namespace gears::vmm::disk
