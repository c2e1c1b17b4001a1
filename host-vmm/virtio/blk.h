// virtio-blk (device id 2) backed by a file or block device: IN, OUT, FLUSH and GET_ID with
// preadv/pwritev straight into guest RAM.
//
// Two ways to serve reads and writes (doc/disk.md):
//   - inline (no scheduler, the default): on the notifying vCPU, in ring order;
//   - scheduled: the notify only queues each request, tagged with the address space the
//     notifying vCPU ran in (its issuer: Antfarm's process identity), and the device's I/O
//     thread serves them one at a time in the order a disk::DiskScheduler decides (FIFO,
//     anticipatory by process, anticipatory without identity), optionally paced by a
//     rotating-disk latency model (disk::DiskModel) so that the order matters.
// FLUSH, GET_ID and malformed requests are always answered at once on the vCPU.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "disk/disk_model.h"
#include "disk/scheduler.h"
#include "gears/expected.h"
#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

struct BlkOptions {
  bool read_only = false;  // O_RDONLY and VIRTIO_BLK_F_RO; writes then fail with IOERR
  std::optional<disk::SchedulerKind> scheduler;  // none: inline on the vCPU
  disk::SchedulerParams scheduler_params;
  std::optional<disk::DiskModelParams> model;    // pace the I/O thread like this disk
  // Who issued the requests of a notify (called on the notifying vCPU's thread); key 0: unknown.
  std::function<disk::Issuer()> issuer;
};

// Per issuer (disk::Issuer::key), for `gearsctl stats` (section "disks").
struct BlkIssuerStats {
  uint64_t issuer = 0;
  uint64_t address_space = 0;  // the root of its last request
  uint64_t reads = 0, writes = 0, sectors = 0;
  uint64_t wait_ns = 0;     // queued: arrival until the I/O thread took it
  uint64_t service_ns = 0;  // taken until completed (the model's time when it is on)
};
struct BlkStats {
  std::string scheduler;  // "inline", "fifo", "as", "as-anon"
  bool model = false;
  uint64_t requests = 0, errors = 0, pending = 0;
  disk::SchedulerStats sched;
  std::vector<BlkIssuerStats> issuers;  // at most kMaxIssuerStats; the rest under issuer ~0
};

class VirtioBlkDevice : public VirtioDevice {
 public:
  static constexpr size_t kMaxIssuerStats = 256;
  virtual BlkStats stats() const = 0;
  // `issuer` (a disk::Issuer key) is gone, e.g. its process exited: its scheduler stops
  // anticipating it now instead of at the window's end. Any thread.
  virtual void forget(uint64_t issuer) = 0;
};

// Capacity is the file size in 512-byte sectors (a partial last sector is not exposed).
Expected<std::unique_ptr<VirtioBlkDevice>> make_virtio_blk(const std::string& path, BlkOptions opts = {});

// "PATH" or "path=PATH[,ro][,sched=fifo|as|as-anon][,model=hdd][,window_ms=N]": --virtio-blk.
struct BlkSpec {
  std::string path;
  BlkOptions options;
};
Expected<BlkSpec> parse_blk_spec(const std::string& text);

}  // namespace gears::vmm::virtio
