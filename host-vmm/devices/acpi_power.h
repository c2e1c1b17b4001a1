// The ACPI power device of the HW-reduced platform: sleep control/status and reset registers
// on private I/O ports (x86/layout.h), announced in the FADT. Writing SLP_TYP=S5 with SLP_EN
// powers the VM off; writing the reset value resets it. Both end the run (RunControl).
#pragma once

#include "core/io_bus.h"
#include "core/run_control.h"

namespace gears::vmm::devices {

class AcpiPower final : public IoDevice {
 public:
  // Registered at kAcpiSleepControlPort, covering the three ports.
  static constexpr uint64_t kPortCount = 3;
  explicit AcpiPower(RunControl& control) : control_(control) {}
  std::string_view name() const override { return "acpi-power"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  RunControl& control_;
};

}  // namespace gears::vmm::devices
