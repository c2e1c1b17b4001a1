#include "virtio/blk.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <pthread.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <thread>

#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

// Feature bits (spec 5.2.3).
constexpr unsigned kBlkFSegMax = 2;
constexpr unsigned kBlkFRo = 5;
constexpr unsigned kBlkFFlush = 9;

// Request types and status values (spec 5.2.6).
constexpr uint32_t kTIn = 0;
constexpr uint32_t kTOut = 1;
constexpr uint32_t kTFlush = 4;
constexpr uint32_t kTGetId = 8;
constexpr uint8_t kSOk = 0;
constexpr uint8_t kSIoErr = 1;
constexpr uint8_t kSUnsupp = 2;

constexpr uint64_t kSector = 512;
constexpr uint16_t kQueueMax = 256;
// Linux puts a header and a status descriptor around the data segments.
constexpr uint32_t kSegMax = kQueueMax - 2;
// The largest data transfer one request may carry; larger ones fail with IOERR. Linux's
// default max_sectors (1280 KiB) stays well below.
constexpr uint64_t kMaxRequestBytes = 32ULL << 20;
constexpr size_t kIdBytes = 20;  // VIRTIO_BLK_ID_BYTES

struct RequestHeader {
  uint32_t type;
  uint32_t ioprio;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

// preadv/pwritev until done; a short transfer that makes no progress is an error.
bool transfer_all(int fd, bool write, std::vector<iovec> iov, uint64_t off) {
  size_t first = 0;
  while (first < iov.size()) {
    const int cnt = static_cast<int>(std::min<size_t>(iov.size() - first, IOV_MAX));
    ssize_t n = write ? pwritev(fd, &iov[first], cnt, static_cast<off_t>(off))
                      : preadv(fd, &iov[first], cnt, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    off += static_cast<uint64_t>(n);
    auto left = static_cast<size_t>(n);
    while (first < iov.size() && left >= iov[first].iov_len) left -= iov[first++].iov_len;
    if (left > 0) {
      iov[first].iov_base = static_cast<uint8_t*>(iov[first].iov_base) + left;
      iov[first].iov_len -= left;
    }
  }
  return true;
}

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

void sleep_until_ns(uint64_t t) {
  const timespec ts{static_cast<time_t>(t / 1'000'000'000ULL), static_cast<long>(t % 1'000'000'000ULL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

class Blk final : public VirtioBlkDevice {
 public:
  Blk(int fd, uint64_t sectors, std::string id, BlkOptions opts)
      : fd_(fd), sectors_(sectors), id_(std::move(id)), opts_(std::move(opts)) {
    if (opts_.model) model_.emplace(sectors_, *opts_.model);
    if (opts_.scheduler) {
      sched_ = disk::make_scheduler(*opts_.scheduler, opts_.scheduler_params);
      io_thread_ = std::thread([this] { io_loop(); });
    }
  }
  ~Blk() override {
    if (io_thread_.joinable()) {
      {
        std::lock_guard lk(mu_);
        stop_ = true;
      }
      work_cv_.notify_all();
      io_thread_.join();
    }
    close(fd_);
  }
  Blk(const Blk&) = delete;
  Blk& operator=(const Blk&) = delete;

  std::string_view name() const override { return "virtio-blk"; }
  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t features() const override {
    return feature_bit(kBlkFSegMax) | feature_bit(kBlkFFlush) |
           (opts_.read_only ? feature_bit(kBlkFRo) : 0);
  }
  uint16_t num_queues() const override { return 1; }
  uint16_t queue_max_size(uint16_t) const override { return kQueueMax; }

  // struct virtio_blk_config up to blk_size: capacity, size_max, seg_max, geometry, blk_size.
  uint32_t config_size() const override { return 24; }
  void read_config(uint32_t offset, std::span<uint8_t> data) override {
    std::array<uint8_t, 24> cfg{};
    std::memcpy(cfg.data() + 0, &sectors_, sizeof sectors_);
    std::memcpy(cfg.data() + 12, &kSegMax, sizeof kSegMax);
    std::memcpy(data.data(), cfg.data() + offset, data.size());
  }

  Expected<void> activate(const Activation& act) override {
    std::lock_guard lk(mu_);
    if (act.queues.empty() || !act.queues[0]) return fail("virtio-blk needs its request queue");
    vq_ = act.queues[0];
    events_ = act.events;
    return {};
  }

  void queue_notify(uint16_t queue) override {
    // Who kicked: read on this (the vCPU's) thread before anything else.
    const disk::Issuer issuer = sched_ && opts_.issuer ? opts_.issuer() : disk::Issuer{};
    std::lock_guard lk(mu_);
    if (queue != 0 || !vq_) return;
    const uint64_t now = mono_ns();
    bool queued = false;
    while (auto chain = vq_->pop()) {
      if (sched_) {
        if (auto r = schedulable(*chain, issuer, now)) {
          queued_.emplace(r->seq, std::move(*chain));
          sched_->add(*r, now);
          queued = true;
          continue;
        }
      }
      handle(*chain);
    }
    vq_->signal();
    if (queued) work_cv_.notify_one();
  }

  // Waits for a request in service (its buffers are the old driver's); the queued ones are
  // dropped with the rings they came from.
  void reset() override {
    std::unique_lock lk(mu_);
    idle_cv_.wait(lk, [this] { return !busy_; });
    vq_ = nullptr;
    events_ = nullptr;
    queued_.clear();
    if (sched_) sched_ = disk::make_scheduler(*opts_.scheduler, opts_.scheduler_params);
  }

  void forget(uint64_t issuer) override {
    {
      std::lock_guard lk(mu_);
      if (!sched_) return;
      sched_->forget(issuer);
    }
    work_cv_.notify_one();
  }

  BlkStats stats() const override {
    std::lock_guard lk(mu_);
    BlkStats s;
    s.scheduler = opts_.scheduler ? std::string(disk::to_string(*opts_.scheduler)) : "inline";
    s.model = model_.has_value();
    s.requests = requests_;
    s.errors = errors_;
    s.pending = sched_ ? sched_->pending() : 0;
    if (sched_) s.sched = sched_->stats();
    for (const auto& [issuer, st] : issuers_) s.issuers.push_back(st);
    return s;
  }

 private:
  bool in_range(uint64_t sector, uint64_t bytes) const {
    return bytes % kSector == 0 && bytes <= kMaxRequestBytes && sector <= sectors_ &&
           bytes / kSector <= sectors_ - sector;
  }

  // A well-formed IN/OUT request that may wait for the I/O thread; anything else (other
  // types, bad header, out of range, a write to a read-only disk) is answered inline.
  std::optional<disk::DiskRequest> schedulable(const Chain& c, const disk::Issuer& issuer, uint64_t now) {
    const uint64_t writable = c.writable_bytes();
    RequestHeader h{};
    if (writable == 0 || copy_from_segments(vq_->memory(), c.readable, 0,
                                            std::span(reinterpret_cast<uint8_t*>(&h), sizeof h)) != sizeof h)
      return std::nullopt;
    uint64_t len = 0;
    if (h.type == kTIn) {
      len = writable - 1;
    } else if (h.type == kTOut && !opts_.read_only) {
      len = c.readable_bytes() - sizeof h;
    } else {
      return std::nullopt;
    }
    if (len == 0 || !in_range(h.sector, len)) return std::nullopt;
    return disk::DiskRequest{next_seq_++, h.type == kTOut, h.sector, len / kSector, issuer.key, now,
                             issuer.address_space};
  }

  // The I/O thread: asks the scheduler, serves one request outside the lock (the chain was
  // validated; guest RAM stays mapped for the VM's life), completes it under the lock.
  void io_loop() {
    pthread_setname_np(pthread_self(), "gears-blk-io");
    std::unique_lock lk(mu_);
    while (!stop_) {
      disk::Decision d = sched_ && vq_ ? sched_->next(mono_ns()) : disk::Decision{};
      if (!d.serve) {
        if (d.wait_until_ns) {
          work_cv_.wait_until(lk, std::chrono::steady_clock::time_point(std::chrono::nanoseconds(d.wait_until_ns)));
        } else {
          work_cv_.wait(lk);
        }
        continue;
      }
      const disk::DiskRequest r = *d.serve;
      auto it = queued_.find(r.seq);
      if (it == queued_.end()) continue;  // cannot happen: the scheduler only returns what it got
      const Chain chain = std::move(it->second);
      queued_.erase(it);
      const uint64_t start = mono_ns();
      const uint64_t service = model_ ? model_->service_ns(head_, r) : 0;
      GuestMemory& mem = vq_->memory();
      busy_ = true;
      lk.unlock();
      const uint64_t bytes = r.sectors * kSector;
      auto iov = r.write ? segments_iov(mem, chain.readable, sizeof(RequestHeader), bytes)
                         : segments_iov(mem, chain.writable, 0, bytes);
      const bool ok = iov && transfer_all(fd_, r.write, *iov, r.sector * kSector);
      if (model_) sleep_until_ns(start + service);
      lk.lock();
      busy_ = false;
      idle_cv_.notify_all();
      const uint64_t done = mono_ns();
      account(r, start, done, ok);
      head_ = r.end();
      if (!vq_) continue;  // reset while in service: the driver no longer waits for it
      const uint8_t status = ok ? kSOk : kSIoErr;
      copy_to_segments(mem, chain.writable, chain.writable_bytes() - 1, std::span(&status, 1));
      vq_->push(chain.head, static_cast<uint32_t>((ok && !r.write ? bytes : 0) + 1));
      vq_->signal();
      sched_->completed(r, done);
    }
  }

  void account(const disk::DiskRequest& r, uint64_t start, uint64_t done, bool ok) {
    ++requests_;
    if (!ok) ++errors_;
    uint64_t key = r.issuer;
    if (!issuers_.count(key) && issuers_.size() >= kMaxIssuerStats) key = ~uint64_t{0};
    BlkIssuerStats& st = issuers_[key];
    st.issuer = key;
    st.address_space = r.address_space;
    ++(r.write ? st.writes : st.reads);
    st.sectors += r.sectors;
    st.wait_ns += start - r.arrival_ns;
    st.service_ns += done - start;
  }

  // One request: header (readable), data, status byte (the last writable byte).
  void handle(const Chain& c) {
    GuestMemory& mem = vq_->memory();
    const uint64_t writable = c.writable_bytes();
    if (writable == 0) {  // nowhere to put the status: the driver broke the protocol
      if (events_) events_->malformed_chain(vq_->index());
      vq_->push(c.head, 0);
      return;
    }
    const uint64_t status_at = writable - 1;
    uint64_t written = 0;  // data bytes written into the chain
    uint8_t status = kSOk;
    RequestHeader h{};
    if (copy_from_segments(mem, c.readable, 0,
                           std::span(reinterpret_cast<uint8_t*>(&h), sizeof h)) != sizeof h) {
      status = kSIoErr;
    } else if (h.type == kTIn) {
      const uint64_t len = status_at;
      auto iov = segments_iov(mem, c.writable, 0, len);
      if (!in_range(h.sector, len) || !iov || !transfer_all(fd_, false, *iov, h.sector * kSector))
        status = kSIoErr;
      else
        written = len;
    } else if (h.type == kTOut) {
      const uint64_t len = c.readable_bytes() - sizeof h;
      auto iov = segments_iov(mem, c.readable, sizeof h, len);
      if (opts_.read_only || !in_range(h.sector, len) || !iov ||
          !transfer_all(fd_, true, *iov, h.sector * kSector))
        status = kSIoErr;
    } else if (h.type == kTFlush) {
      if (fdatasync(fd_) != 0 && errno != EINVAL) status = kSIoErr;
    } else if (h.type == kTGetId) {
      std::array<uint8_t, kIdBytes> id{};  // NUL-padded when shorter than 20 bytes
      std::memcpy(id.data(), id_.data(), std::min(id_.size(), kIdBytes));
      written = copy_to_segments(mem, c.writable, 0,
                                 std::span(id.data(), std::min<uint64_t>(kIdBytes, status_at)));
    } else {
      status = kSUnsupp;
    }
    copy_to_segments(mem, c.writable, status_at, std::span(&status, 1));
    vq_->push(c.head, static_cast<uint32_t>(written + 1));
    ++requests_;
    if (status != kSOk) ++errors_;
  }

  const int fd_;
  const uint64_t sectors_;
  const std::string id_;
  const BlkOptions opts_;
  std::optional<disk::DiskModel> model_;

  mutable std::mutex mu_;  // everything below
  Virtqueue* vq_ = nullptr;
  QueueEvents* events_ = nullptr;
  uint64_t requests_ = 0, errors_ = 0;
  // Scheduled mode: the requests waiting for the I/O thread (by DiskRequest::seq), the
  // scheduler's queue of them, where the modelled head is, and who asked for what.
  std::unique_ptr<disk::DiskScheduler> sched_;
  std::map<uint64_t, Chain> queued_;
  uint64_t next_seq_ = 0;
  uint64_t head_ = 0;
  bool busy_ = false, stop_ = false;
  std::condition_variable work_cv_, idle_cv_;
  std::map<uint64_t, BlkIssuerStats> issuers_;
  std::thread io_thread_;  // started in the constructor's body, once every member exists
};

}  // namespace

Expected<std::unique_ptr<VirtioBlkDevice>> make_virtio_blk(const std::string& path, BlkOptions opts) {
  int fd = open(path.c_str(), (opts.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
  if (fd < 0) return fail_errno("opening disk image " + path);
  struct stat st {};
  uint64_t bytes = 0;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return fail_errno("stat of disk image " + path, e);
  }
  if (S_ISBLK(st.st_mode)) {
    if (ioctl(fd, BLKGETSIZE64, &bytes) != 0) {
      int e = errno;
      close(fd);
      return fail_errno("sizing block device " + path, e);
    }
  } else if (S_ISREG(st.st_mode)) {
    bytes = static_cast<uint64_t>(st.st_size);
  } else {
    close(fd);
    return fail("disk image " + path + " is neither a regular file nor a block device");
  }
  // GET_ID answers with the image's file name, cut to the 20 bytes virtio-blk allows.
  std::string id = path.substr(path.find_last_of('/') + 1).substr(0, kIdBytes);
  return std::unique_ptr<VirtioBlkDevice>(std::make_unique<Blk>(fd, bytes / kSector, id, std::move(opts)));
}

}  // namespace gears::vmm::virtio
