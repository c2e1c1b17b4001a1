#include "virtio/blk.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <mutex>

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

class Blk final : public VirtioDevice {
 public:
  Blk(int fd, uint64_t sectors, bool read_only, std::string id)
      : fd_(fd), sectors_(sectors), read_only_(read_only), id_(std::move(id)) {}
  ~Blk() override { close(fd_); }
  Blk(const Blk&) = delete;
  Blk& operator=(const Blk&) = delete;

  std::string_view name() const override { return "virtio-blk"; }
  uint32_t device_id() const override { return kDeviceIdBlock; }
  uint64_t features() const override {
    return feature_bit(kBlkFSegMax) | feature_bit(kBlkFFlush) |
           (read_only_ ? feature_bit(kBlkFRo) : 0);
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
    std::lock_guard lk(mu_);
    if (queue != 0 || !vq_) return;
    while (auto chain = vq_->pop()) handle(*chain);
    vq_->signal();
  }

  void reset() override {
    std::lock_guard lk(mu_);
    vq_ = nullptr;
    events_ = nullptr;
  }

 private:
  bool in_range(uint64_t sector, uint64_t bytes) const {
    return bytes % kSector == 0 && bytes <= kMaxRequestBytes && sector <= sectors_ &&
           bytes / kSector <= sectors_ - sector;
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
      if (read_only_ || !in_range(h.sector, len) || !iov ||
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
  }

  const int fd_;
  const uint64_t sectors_;
  const bool read_only_;
  const std::string id_;

  std::mutex mu_;  // serializes requests and guards the queue pointer
  Virtqueue* vq_ = nullptr;
  QueueEvents* events_ = nullptr;
};

}  // namespace

Expected<std::unique_ptr<VirtioDevice>> make_virtio_blk(const std::string& path, bool read_only) {
  int fd = open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
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
  return std::unique_ptr<VirtioDevice>(std::make_unique<Blk>(fd, bytes / kSector, read_only, id));
}

}  // namespace gears::vmm::virtio
