#include "devices/serial_16550.h"

namespace gears::vmm::devices {

namespace {
constexpr size_t kRxQueueMax = 64 * 1024;  // bytes typed ahead before the guest reads them
}

void Serial16550::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  // Wider accesses return the register in the low byte; the UART is byte-wide.
  for (auto& b : data) b = 0;
  data[0] = offset < kPortCount ? read_reg(static_cast<uint8_t>(offset)) : 0xff;
}

void Serial16550::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || offset >= kPortCount) return;
  write_reg(static_cast<uint8_t>(offset), data[0]);
}

void Serial16550::push_input(std::span<const uint8_t> bytes) {
  std::lock_guard lock(mu_);
  for (uint8_t b : bytes)
    if (rx_.size() < kRxQueueMax) rx_.push_back(b);
  update_irq_locked();
}

uint8_t Serial16550::iir_locked() const {
  uint8_t fifo = (fcr_ & kFcrEnable) ? kIirFifo : 0;
  if ((ier_ & kIerRdi) && rx_ready_locked()) return fifo | kIirRdi;
  if ((ier_ & kIerThri) && thre_pending_) return fifo | kIirThri;
  return fifo | kIirNoInt;
}

void Serial16550::update_irq_locked() {
  bool high = (iir_locked() & kIirNoInt) == 0;
  if (high != irq_high_) {
    irq_high_ = high;
    if (irq_) irq_->set_level(high);
  }
}

uint8_t Serial16550::read_reg(uint8_t reg) {
  std::lock_guard lock(mu_);
  uint8_t v = 0;
  switch (reg) {
    case kRbrThr:
      if (lcr_ & kLcrDlab) {
        v = dll_;
      } else if (rx_ready_locked()) {
        v = rx_.front();
        rx_.pop_front();
      }
      break;
    case kIer: v = (lcr_ & kLcrDlab) ? dlm_ : ier_; break;
    case kIirFcr:
      v = iir_locked();
      // Reading IIR while it reports THRE acknowledges that interrupt (16550 datasheet).
      if ((v & 0x0f) == kIirThri) thre_pending_ = false;
      break;
    case kLcr: v = lcr_; break;
    case kMcr: v = mcr_; break;
    case kLsr: v = kLsrThre | kLsrTemt | (rx_ready_locked() ? kLsrDr : 0); break;
    case kMsr:
      if (mcr_ & kMcrLoop) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        v = static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) | ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      } else {
        v = 0xb0;  // DCD, DSR, CTS: a cable is always there
      }
      break;
    case kScr: v = scr_; break;
    default: break;
  }
  update_irq_locked();
  return v;
}

void Serial16550::write_reg(uint8_t reg, uint8_t v) {
  uint8_t out = 0;
  bool emit = false;
  {
    std::lock_guard lock(mu_);
    switch (reg) {
      case kRbrThr:
        if (lcr_ & kLcrDlab) {
          dll_ = v;
        } else if (mcr_ & kMcrLoop) {
          if (rx_.size() < kRxQueueMax) rx_.push_back(v);
          thre_pending_ = true;
        } else {
          out = v;
          emit = true;
          thre_pending_ = true;  // sent at once: THR is empty again
        }
        break;
      case kIer:
        if (lcr_ & kLcrDlab) {
          dlm_ = v;
        } else {
          // Enabling THRI while THR is empty raises THRE at once.
          if ((v & kIerThri) && !(ier_ & kIerThri)) thre_pending_ = true;
          ier_ = v & 0x0f;
        }
        break;
      case kIirFcr:
        // "Clear RX FIFO" is not applied to the host-side queue: those bytes have not reached
        // the UART yet, and the 8250 driver clears the FIFOs on every open.
        fcr_ = v;
        break;
      case kLcr: lcr_ = v; break;
      case kMcr: mcr_ = v & 0x1f; break;
      case kScr: scr_ = v; break;
      default: break;  // LSR/MSR are read-only
    }
    // Drop the line first when a write re-arms THRE, so an edge-triggered IOAPIC pin sees a
    // fresh rising edge for the next character.
    if (reg == kRbrThr && irq_high_ && !(lcr_ & kLcrDlab)) {
      irq_high_ = false;
      if (irq_) irq_->set_level(false);
    }
    update_irq_locked();
  }
  if (emit && output_) output_(out);
}

}  // namespace gears::vmm::devices
