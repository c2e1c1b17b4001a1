// A virtio device as its transport sees it: a table of operations (kvmtool's virtio_ops).
// Transports (virtio-mmio today) never know which device they carry, and devices never see a
// register: adding a device touches no transport, adding a transport touches no device.
//
// Threading: the transport calls these on vCPU threads, possibly concurrently (a notify on one
// vCPU while another reads config), so each device locks its own state. The transport calls
// activate()/reset() under its register lock and never while it holds the interrupt lock.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "gears/expected.h"
#include "virtio/virtqueue.h"

namespace gears::vmm::virtio {

// What the driver agreed to when it set DRIVER_OK.
struct Activation {
  uint64_t features = 0;  // negotiated (driver-accepted) feature bits, transport bits included
  // One entry per queue the device declared; nullptr for a queue the driver left unused.
  // Owned by the transport; valid until reset() returns.
  std::vector<Virtqueue*> queues;
  QueueEvents* events = nullptr;  // interrupts, config changes, DEVICE_NEEDS_RESET
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual std::string_view name() const = 0;
  virtual uint32_t device_id() const = 0;  // spec 5: net 1, block 2, console 3, ...
  // Device-specific feature bits offered. The transport adds the ring/transport bits it
  // implements (VERSION_1, INDIRECT_DESC, EVENT_IDX).
  virtual uint64_t features() const = 0;
  virtual uint16_t num_queues() const = 0;
  virtual uint16_t queue_max_size(uint16_t queue) const = 0;

  // Configuration space (spec 4.2.2: at 0x100 in the mmio window). The transport has already
  // bounds-checked [offset, offset+data.size()) against config_size().
  virtual uint32_t config_size() const = 0;
  virtual void read_config(uint32_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint32_t /*offset*/, std::span<const uint8_t> /*data*/) {}

  // DRIVER_OK: start using the queues. An error sets DEVICE_NEEDS_RESET.
  virtual Expected<void> activate(const Activation& act) = 0;
  // The driver notified (kicked) `queue`. Only called between activate() and reset().
  // Also called once per ready queue right after activate(), for buffers the driver made
  // available before DRIVER_OK.
  virtual void queue_notify(uint16_t queue) = 0;
  // Status 0 written (or the transport is going away): stop touching the queues and forget
  // them before returning; keep host-side state (files, pending input).
  virtual void reset() = 0;
};

}  // namespace gears::vmm::virtio
