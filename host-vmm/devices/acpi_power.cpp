#include "devices/acpi_power.h"

#include <algorithm>

#include "x86/layout.h"

namespace gears::vmm::devices {

namespace {
constexpr uint8_t kSlpEn = 1 << 5;
constexpr uint8_t kWakeStatus = 1 << 7;
}  // namespace

void AcpiPower::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0);
  // The sleep status register reads "woken" so a guest polling it after a failed sleep exits its loop.
  if (offset == x86::kAcpiSleepStatusPort - x86::kAcpiSleepControlPort && !data.empty()) data[0] = kWakeStatus;
}

void AcpiPower::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  uint8_t v = data[0];
  if (offset == 0) {
    // Sleep control: SLP_TYP in bits 2-4, SLP_EN bit 5. Only S5 (soft off) is offered.
    if ((v & kSlpEn) && ((v >> 2) & 7) == x86::kAcpiS5Type) control_.request_stop(StopReason::PowerOff);
  } else if (offset == x86::kAcpiResetPort - x86::kAcpiSleepControlPort) {
    if (v == x86::kAcpiResetValue) control_.request_stop(StopReason::Reboot);
  }
}

}  // namespace gears::vmm::devices
