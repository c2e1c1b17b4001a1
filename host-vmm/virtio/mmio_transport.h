// virtio-mmio, version 2 ("modern", spec 4.2.2): one VirtioDevice behind a 0x200-byte MMIO
// window. The guest finds it through ACPI (_HID LNRO0005) and drives it with Linux's
// virtio_mmio driver.
//
// Interrupts are level-triggered: the line is high while InterruptStatus != 0 and drops when the
// driver ACKs the last bit. Malformed driver behaviour (bad queue layout, corrupt rings) sets
// DEVICE_NEEDS_RESET instead of touching anything outside guest RAM.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "core/guest_memory.h"
#include "core/io_bus.h"
#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

class VirtioMmioTransport final : public gears::vmm::IoDevice {
 public:
  static constexpr uint64_t kWindowSize = 0x200;
  static constexpr uint32_t kMagic = 0x74726976;     // "virt"
  static constexpr uint32_t kVendorId = 0x53524547;  // "GERS"

  // Register offsets (spec 4.2.2, table "MMIO Device Register Layout").
  enum Reg : uint32_t {
    kMagicValue = 0x000,
    kVersion = 0x004,
    kDeviceId = 0x008,
    kVendor = 0x00c,
    kDeviceFeatures = 0x010,
    kDeviceFeaturesSel = 0x014,
    kDriverFeatures = 0x020,
    kDriverFeaturesSel = 0x024,
    kQueueSel = 0x030,
    kQueueNumMax = 0x034,
    kQueueNum = 0x038,
    kQueueReady = 0x044,
    kQueueNotify = 0x050,
    kInterruptStatus = 0x060,
    kInterruptAck = 0x064,
    kStatus = 0x070,
    kQueueDescLow = 0x080,
    kQueueDescHigh = 0x084,
    kQueueDriverLow = 0x090,
    kQueueDriverHigh = 0x094,
    kQueueDeviceLow = 0x0a0,
    kQueueDeviceHigh = 0x0a4,
    kShmSel = 0x0ac,
    kShmLenLow = 0x0b0,
    kShmLenHigh = 0x0b4,
    kShmBaseLow = 0x0b8,
    kShmBaseHigh = 0x0bc,
    kConfigGeneration = 0x0fc,
    kConfig = 0x100,
  };

  VirtioMmioTransport(GuestMemory& mem, std::shared_ptr<IrqLine> irq,
                      std::unique_ptr<VirtioDevice> dev);
  ~VirtioMmioTransport() override;
  VirtioMmioTransport(const VirtioMmioTransport&) = delete;
  VirtioMmioTransport& operator=(const VirtioMmioTransport&) = delete;

  std::string_view name() const override;
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Statistics, for tests and diagnostics.
  uint64_t malformed_chains() const { return malformed_.load(); }
  VirtioDevice& device() { return *dev_; }

 private:
  struct QueueRegs {
    bool ready = false;
    QueueLayout layout{};
    std::unique_ptr<Virtqueue> vq;  // exists from DRIVER_OK until reset
  };

  // The transport's side of QueueEvents (interrupt status and the irq line).
  class Events final : public QueueEvents {
   public:
    explicit Events(VirtioMmioTransport& t) : t_(t) {}
    void used_buffer(uint16_t queue) override;
    void config_changed() override;
    void needs_reset() override;
    void malformed_chain(uint16_t queue) override;

   private:
    VirtioMmioTransport& t_;
  };

  uint32_t read_reg(uint32_t offset);
  void write_reg(uint32_t offset, uint32_t value);
  void write_status(uint32_t value);
  void queue_ready(uint32_t value);
  void activate();
  void reset_locked();
  uint64_t offered_features() const;
  void raise(uint32_t isr_bits);
  void ack(uint32_t isr_bits);

  GuestMemory& mem_;
  std::shared_ptr<IrqLine> irq_;
  Events events_{*this};

  // Register state. Lock order: mu_, then the device's own lock, then irq_mu_.
  std::mutex mu_;
  uint32_t status_ = 0;
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  std::vector<QueueRegs> queues_;

  // Interrupt state; taken from device threads too, so never held while calling the device.
  std::mutex irq_mu_;
  uint32_t isr_ = 0;
  bool level_ = false;
  bool needs_reset_ = false;
  uint32_t config_generation_ = 0;

  std::atomic<uint64_t> malformed_{0};
  // Declared last so it is destroyed first: a device thread may still call events_.
  std::unique_ptr<VirtioDevice> dev_;
};

}  // namespace gears::vmm::virtio
