// Where gears-vmm puts things in low guest memory at boot. One table, so overlaps are visible.
#pragma once

#include <cstdint>

namespace gears::vmm::x86 {

inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kZeroPageAddr = 0x7000;     // struct boot_params, 4 KiB
inline constexpr uint64_t kPml4Addr = 0x9000;         // page tables: 0x9000-0xefff
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMax = 0x10000;
inline constexpr uint64_t kEbdaStart = 0x9fc00;       // reserved from here to 1 MiB
inline constexpr uint64_t kAcpiAddr = 0xe0000;        // RSDP then the tables (BIOS area)
inline constexpr uint64_t kAcpiMax = 0x10000;
inline constexpr uint64_t kKernelLoadAddr = 0x100000;
inline constexpr uint64_t kBootStackTop = 0x8ff0;

// Virtio-mmio windows: in the 32-bit hole, one 4 KiB page each, GSIs from kVirtioFirstGsi.
inline constexpr uint64_t kVirtioMmioBase = 0xd0000000ULL;
inline constexpr uint64_t kVirtioMmioStride = 0x1000;
inline constexpr uint64_t kVirtioMmioSize = 0x200;
inline constexpr uint32_t kVirtioFirstGsi = 5;
inline constexpr uint32_t kVirtioMaxDevices = 8;  // GSIs 5..12; stays clear of 4 (serial)

// COM1 (devices/serial_16550.h), also described in the DSDT.
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint32_t kCom1Gsi = 4;

// Regions shared with other VMs (--shm) sit above all RAM, from 64 GiB (or the first 1 GiB
// boundary above RAM when RAM reaches further), one after another, each 2 MiB aligned.
inline constexpr uint64_t kSharedRegionMinBase = 64ULL << 30;
inline constexpr uint64_t shared_region_base(uint64_t ram_end) {
  const uint64_t gib = 1ULL << 30;
  const uint64_t above = (ram_end + gib - 1) / gib * gib;
  return above > kSharedRegionMinBase ? above : kSharedRegionMinBase;
}

inline constexpr uint64_t kIoApicAddr = 0xfec00000ULL;
inline constexpr uint64_t kLapicAddr = 0xfee00000ULL;

// Private I/O ports of the ACPI power device (HW-reduced sleep and reset registers).
inline constexpr uint16_t kAcpiSleepControlPort = 0x600;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x601;
inline constexpr uint16_t kAcpiResetPort = 0x602;
inline constexpr uint8_t kAcpiResetValue = 0x1;
inline constexpr uint8_t kAcpiS5Type = 5;  // SLP_TYP in _S5_

}  // namespace gears::vmm::x86
