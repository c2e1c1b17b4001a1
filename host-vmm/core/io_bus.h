// Port-I/O and MMIO dispatch. A device is a table of operations (IoDevice); the vCPU loop
// hands every PIO/MMIO exit to the matching bus, which finds the device by address range.
// Devices never see absolute addresses, only offsets into their own window.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string_view>
#include <utility>
#include <string>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm {

// A device's view of its address window. Called on vCPU threads: implementations lock their
// own state. `data.size()` is the access width (1, 2, 4 or 8 bytes).
class IoDevice {
 public:
  virtual ~IoDevice() = default;
  virtual std::string_view name() const = 0;
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

// An interrupt line into the guest (a GSI on the in-kernel IOAPIC/PIC).
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void set_level(bool high) = 0;
  // An edge: raise and lower.
  void pulse() {
    set_level(true);
    set_level(false);
  }
};

class IoBus {
 public:
  explicit IoBus(std::string name) : name_(std::move(name)) {}

  // Registers `dev` at [base, base+len). Overlapping windows are refused.
  Expected<void> add(uint64_t base, uint64_t len, std::shared_ptr<IoDevice> dev);

  // False when no device claims the address (the caller decides: reads of nothing return
  // all-ones, writes to nothing are dropped, as on a PC).
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

 private:
  struct Entry {
    uint64_t base, len;
    std::shared_ptr<IoDevice> dev;
  };
  const Entry* lookup(uint64_t addr, uint64_t len) const;
  std::pair<std::shared_ptr<IoDevice>, uint64_t> claim(uint64_t addr, uint64_t len) const;

  std::string name_;
  mutable std::mutex mu_;  // guards entries_ against registration while vCPUs run
  std::vector<Entry> entries_;
};

}  // namespace gears::vmm
