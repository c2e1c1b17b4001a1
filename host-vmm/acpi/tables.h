// The ACPI tables gears-vmm gives the guest: RSDP -> XSDT -> {FADT -> DSDT, MADT}.
//
// ACPI is not optional here: Debian's kernel finds virtio-mmio devices only through ACPI
// (CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES is off), and poweroff needs an S5 sleep register.
// The platform is HW-reduced ACPI: no PM1 blocks or SCI, sleep control/status and reset
// registers on private I/O ports (devices/acpi_power.h), no 8042, no VGA, no CMOS RTC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "gears/abi/shm.h"

namespace gears::vmm::acpi {

struct MmioDevice {
  uint64_t base;
  uint32_t size;
  uint32_t gsi;
};

// A memory region shared between co-located VMs (shm/), found by the guest by its name: a
// device with _HID kSharedRegionHid, _UID = the name, _CRS = the range.
struct SharedRegionDevice {
  std::string name;
  uint64_t gpa;
  uint64_t size;
};
inline constexpr const char* kSharedRegionHid = GEARS_SHM_ACPI_HID;

struct Config {
  uint64_t base_addr;                 // guest address of the blob (RSDP first)
  uint32_t vcpus;
  std::vector<MmioDevice> virtio_mmio;
  std::vector<SharedRegionDevice> shared_regions = {};
};

struct Tables {
  std::vector<uint8_t> blob;  // all tables, to be copied to base_addr
  uint64_t rsdp_addr;
  uint64_t xsdt_addr, fadt_addr, dsdt_addr, madt_addr;
};

Tables build_tables(const Config& cfg);

// Pieces, exposed for the unit tests.
std::vector<uint8_t> build_dsdt(const std::vector<MmioDevice>& devices,
                                const std::vector<SharedRegionDevice>& shared_regions = {});
std::vector<uint8_t> build_madt(uint32_t vcpus);
std::vector<uint8_t> build_fadt(uint64_t dsdt_addr);
// Sets the 8-bit checksum at `offset` so that bytes [0, len) sum to zero.
void set_checksum(std::vector<uint8_t>& t, size_t offset, size_t begin, size_t len);
uint8_t sum_bytes(const uint8_t* p, size_t len);

}  // namespace gears::vmm::acpi
