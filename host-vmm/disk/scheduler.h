// The VMM-side disk request scheduler (doc/disk.md): the order in which a virtio-blk device's
// I/O thread serves the requests the guest queued. Pluggable: FIFO, and Antfarm's
// anticipatory policy with or without process identity.
//
//   fifo      arrival order.
//   as        anticipatory, by process (Antfarm, ATC'06 section 6): after a read of process P
//             completes, if P's history says it reads sequentially with short pauses, the disk
//             stays idle up to `window` for P's next read near where the last one ended,
//             instead of seeking away to another process's pending request ("deceptive
//             idleness": a synchronous reader always looks idle between its reads). P's run
//             is capped at `batch` so others get their turn; a read older than `read_expire`
//             is served next whatever the policy says.
//   as-anon   the same without identity: one history for all requests, and the wait ends with
//             a read near the head from anyone. What the process identity buys is the
//             difference between the two.
// Otherwise requests are served in arrival order (the policies differ only by anticipating).
// Not thread-safe: the device's lock serialises calls. Times are the caller's clock (ns).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "disk/disk_request.h"
#include "gears/expected.h"

namespace gears::vmm::disk {

enum class SchedulerKind { kFifo, kAnticipatory, kAnticipatoryAnon };
Expected<SchedulerKind> parse_scheduler_kind(std::string_view name);
std::string_view to_string(SchedulerKind k);

struct SchedulerParams {
  uint64_t window_ns = 8'000'000;         // the longest wait for the anticipated read
  uint64_t near_sectors = 2048;           // "near": within 1 MiB of where the last read ended
  uint64_t batch_ns = 100'000'000;        // the longest one issuer is favoured while others wait
  uint64_t read_expire_ns = 500'000'000;  // no request waits longer than this behind anticipation
};

struct SchedulerStats {
  uint64_t anticipated = 0;  // waits started
  uint64_t hits = 0;         // ... that ended with the anticipated read
  uint64_t expired = 0;      // ... that ran out (window, batch or an expired request)
};

// What to do now: serve `serve`, or (none) stay idle until `wait_until_ns` (anticipating; 0:
// nothing to do until the next add()).
struct Decision {
  std::optional<DiskRequest> serve;
  uint64_t wait_until_ns = 0;
};

class DiskScheduler {
 public:
  virtual ~DiskScheduler() = default;
  virtual void add(const DiskRequest& r, uint64_t now_ns) = 0;
  // Takes the next request out of the queue (or says how long to stay idle).
  virtual Decision next(uint64_t now_ns) = 0;
  // `r` (the last one next() returned) is done.
  virtual void completed(const DiskRequest& r, uint64_t now_ns) = 0;
  // `issuer` is gone (its process exited): never wait for it again.
  virtual void forget(uint64_t issuer) = 0;
  virtual size_t pending() const = 0;
  virtual SchedulerStats stats() const = 0;
};

std::unique_ptr<DiskScheduler> make_scheduler(SchedulerKind kind, SchedulerParams params = {});

}  // namespace gears::vmm::disk
