// A 16550A UART (COM1: port 0x3f8, IRQ 4), enough for the Linux 8250 driver in both of its
// modes: polled printk output and interrupt-driven tty I/O. Transmission is instant, so THR
// is always empty; the THRE interrupt follows the 16550 rules (raised when THRI is enabled or
// a byte is written, cleared by reading IIR or writing THR). Received bytes wait in a host-
// side queue and are visible (LSR.DR, RBR) only while the guest has receive interrupts
// enabled: the 8250 driver probes and clears the UART (reading RBR "for luck") before it
// listens, and bytes typed ahead would otherwise be lost there.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <span>

#include "core/io_bus.h"
#include "x86/layout.h"

namespace gears::vmm::devices {

class Serial16550 final : public IoDevice {
 public:
  static constexpr uint16_t kCom1Port = x86::kCom1Port;
  static constexpr uint32_t kCom1Gsi = x86::kCom1Gsi;
  static constexpr uint64_t kPortCount = 8;

  // Register offsets and bits used by the model (and its tests).
  static constexpr uint8_t kRbrThr = 0, kIer = 1, kIirFcr = 2, kLcr = 3, kMcr = 4, kLsr = 5, kMsr = 6, kScr = 7;
  static constexpr uint8_t kIerRdi = 0x01, kIerThri = 0x02;
  static constexpr uint8_t kIirNoInt = 0x01, kIirThri = 0x02, kIirRdi = 0x04, kIirFifo = 0xc0;
  static constexpr uint8_t kLsrDr = 0x01, kLsrThre = 0x20, kLsrTemt = 0x40;
  static constexpr uint8_t kLcrDlab = 0x80, kMcrLoop = 0x10, kFcrEnable = 0x01;

  // `output` gets every transmitted byte (the console sink); `irq` is the UART's line.
  Serial16550(std::shared_ptr<IrqLine> irq, std::function<void(uint8_t)> output)
      : irq_(std::move(irq)), output_(std::move(output)) {}

  std::string_view name() const override { return "serial-16550"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host side: queue bytes typed by the user (thread-safe).
  void push_input(std::span<const uint8_t> bytes);

 private:
  uint8_t read_reg(uint8_t reg);
  void write_reg(uint8_t reg, uint8_t v);
  uint8_t iir_locked() const;
  bool rx_ready_locked() const { return (ier_ & kIerRdi) && !rx_.empty(); }
  void update_irq_locked();

  std::shared_ptr<IrqLine> irq_;
  std::function<void(uint8_t)> output_;
  std::mutex mu_;
  uint8_t ier_ = 0, lcr_ = 0, mcr_ = 0, scr_ = 0, dll_ = 0x0c, dlm_ = 0, fcr_ = 0;
  bool thre_pending_ = false;
  bool irq_high_ = false;
  std::deque<uint8_t> rx_;
};

}  // namespace gears::vmm::devices
