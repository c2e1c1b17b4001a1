#include "acpi/tables.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "acpi/aml.h"
#include "x86/layout.h"

namespace gears::vmm::acpi {

namespace {

using Bytes = std::vector<uint8_t>;
constexpr size_t kHeaderLen = 36;

void put(Bytes& t, size_t off, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) t[off + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (8 * i));
}
void put_str(Bytes& t, size_t off, const char* s, size_t n) {
  for (size_t i = 0; i < n; ++i) t[off + i] = static_cast<uint8_t>(s[i]);
}

// The standard 36-byte description header; length and checksum are fixed by finish().
Bytes header(const char sig[4], uint8_t revision, size_t len) {
  Bytes t(len, 0);
  put_str(t, 0, sig, 4);
  put(t, 8, revision, 1);
  put_str(t, 10, "GEARS ", 6);
  char table_id[9];
  std::snprintf(table_id, sizeof table_id, "GVMM%.4s", sig);
  put_str(t, 16, table_id, 8);
  put(t, 24, 1, 4);             // OEM revision
  put_str(t, 28, "GVMM", 4);    // creator id
  put(t, 32, 1, 4);             // creator revision
  return t;
}

void finish(Bytes& t) {
  put(t, 4, t.size(), 4);
  set_checksum(t, 9, 0, t.size());
}

// Generic Address Structure: I/O port, byte access.
void gas_io(Bytes& t, size_t off, uint16_t port, uint8_t bit_width) {
  t[off] = 1;              // SystemIO
  t[off + 1] = bit_width;
  t[off + 2] = 0;          // bit offset
  t[off + 3] = 1;          // access size: byte
  put(t, off + 4, port, 8);
}

}  // namespace

uint8_t sum_bytes(const uint8_t* p, size_t len) {
  uint8_t s = 0;
  for (size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + p[i]);
  return s;
}

void set_checksum(Bytes& t, size_t offset, size_t begin, size_t len) {
  t[offset] = 0;
  t[offset] = static_cast<uint8_t>(-sum_bytes(t.data() + begin, len));
}

Bytes build_dsdt(const std::vector<MmioDevice>& devices, const std::vector<SharedRegionDevice>& shared_regions) {
  using namespace aml;
  // \_S5_: SLP_TYPa/b for poweroff, written to the sleep control register.
  Bytes body = name("_S5_", package({integer(x86::kAcpiS5Type), integer(0), integer(0), integer(0)}));
  // COM1. In HW-reduced ACPI Linux has no legacy PIC and maps no ISA IRQ by itself: the UART's
  // IRQ 4 only works once a device's _CRS asks for it (the 8250 PNP driver then uses it).
  Bytes sb = device("COM1", concat({
      name("_HID", string("PNP0501")),
      name("_UID", integer(0)),
      name("_CRS", resource_template({io_port(x86::kCom1Port, 8), interrupt(x86::kCom1Gsi, false, false)})),
  }));
  for (size_t i = 0; i < devices.size(); ++i) {
    // Device names V000..V999 (at most kVirtioMaxDevices devices exist).
    char dev_name[24];
    std::snprintf(dev_name, sizeof dev_name, "V%03u", static_cast<unsigned>(i % 1000));
    const MmioDevice& d = devices[i];
    sb = concat({sb, device(dev_name, concat({
                         name("_HID", string("LNRO0005")),  // the virtio-mmio ACPI id
                         name("_UID", integer(i)),
                         name("_CCA", integer(1)),          // cache-coherent DMA
                         name("_CRS", resource_template({memory32_fixed(static_cast<uint32_t>(d.base), d.size),
                                                         interrupt(d.gsi, true, false)})),
                     }))});
  }
  for (size_t i = 0; i < shared_regions.size(); ++i) {
    // Device names S000..S999; the guest looks a region up by _HID + _UID (its name).
    char dev_name[24];
    std::snprintf(dev_name, sizeof dev_name, "S%03u", static_cast<unsigned>(i % 1000));
    const SharedRegionDevice& r = shared_regions[i];
    sb = concat({sb, device(dev_name, concat({
                         name("_HID", string(kSharedRegionHid)),
                         name("_UID", string(r.name)),
                         name("_CRS", resource_template({qword_memory(r.gpa, r.size)})),
                     }))});
  }
  body = concat({body, scope("\\_SB_", sb)});
  Bytes t = header("DSDT", 2, kHeaderLen);
  t.insert(t.end(), body.begin(), body.end());
  finish(t);
  return t;
}

Bytes build_madt(uint32_t vcpus) {
  Bytes t = header("APIC", 5, kHeaderLen + 8);
  put(t, 36, x86::kLapicAddr, 4);
  put(t, 40, 1, 4);  // PCAT_COMPAT: there are 8259s (the in-kernel PIC); the kernel masks them
  for (uint32_t i = 0; i < vcpus; ++i) {
    // Processor Local APIC: uid, APIC id = vCPU id, enabled.
    Bytes e{0, 8, static_cast<uint8_t>(i), static_cast<uint8_t>(i), 1, 0, 0, 0};
    t.insert(t.end(), e.begin(), e.end());
  }
  Bytes ioapic(12, 0);
  ioapic[0] = 1;
  ioapic[1] = 12;
  ioapic[2] = static_cast<uint8_t>(vcpus);  // IOAPIC id after the LAPIC ids
  put(ioapic, 4, x86::kIoApicAddr, 4);
  put(ioapic, 8, 0, 4);  // GSI base: ISA IRQ n = GSI n (no overrides)
  t.insert(t.end(), ioapic.begin(), ioapic.end());
  // Local APIC NMI on LINT1 for all processors.
  Bytes nmi{4, 6, 0xff, 0, 0, 1};
  t.insert(t.end(), nmi.begin(), nmi.end());
  finish(t);
  return t;
}

Bytes build_fadt(uint64_t dsdt_addr) {
  Bytes t = header("FACP", 6, 276);
  put(t, 40, dsdt_addr, 4);        // DSDT (32-bit)
  // IAPC_BOOT_ARCH: no LEGACY_DEVICES, no 8042 (bit 1 clear), VGA not present (bit 2),
  // MSI not supported (bit 3), CMOS RTC not present (bit 5).
  put(t, 109, (1u << 2) | (1u << 3) | (1u << 5), 2);
  // Flags: PWR_BUTTON/SLP_BUTTON (no fixed buttons, bits 4,5), RESET_REG_SUP (10),
  // HW_REDUCED_ACPI (20).
  put(t, 112, (1u << 4) | (1u << 5) | (1u << 10) | (1u << 20), 4);
  gas_io(t, 116, x86::kAcpiResetPort, 8);
  t[128] = x86::kAcpiResetValue;
  t[131] = 5;                      // FADT minor version (6.5)
  put(t, 140, dsdt_addr, 8);       // X_DSDT
  gas_io(t, 244, x86::kAcpiSleepControlPort, 8);
  gas_io(t, 256, x86::kAcpiSleepStatusPort, 8);
  put_str(t, 268, "GEARSVMM", 8);  // hypervisor vendor identity
  finish(t);
  return t;
}

Tables build_tables(const Config& cfg) {
  Tables out{};
  Bytes blob(36, 0);  // RSDP first, at base_addr (16-byte aligned: the kernel also scans for it)
  auto place = [&](const Bytes& table) {
    while (blob.size() % 16) blob.push_back(0);
    uint64_t at = cfg.base_addr + blob.size();
    blob.insert(blob.end(), table.begin(), table.end());
    return at;
  };
  out.dsdt_addr = place(build_dsdt(cfg.virtio_mmio, cfg.shared_regions));
  out.fadt_addr = place(build_fadt(out.dsdt_addr));
  out.madt_addr = place(build_madt(cfg.vcpus));
  Bytes xsdt = header("XSDT", 1, kHeaderLen + 16);
  put(xsdt, 36, out.fadt_addr, 8);
  put(xsdt, 44, out.madt_addr, 8);
  finish(xsdt);
  out.xsdt_addr = place(xsdt);

  put_str(blob, 0, "RSD PTR ", 8);
  put_str(blob, 9, "GEARS ", 6);
  blob[15] = 2;                  // revision: ACPI 2.0+ (XSDT)
  put(blob, 16, 0, 4);           // no RSDT
  put(blob, 20, 36, 4);          // length
  put(blob, 24, out.xsdt_addr, 8);
  set_checksum(blob, 8, 0, 20);   // ACPI 1.0 checksum over the first 20 bytes
  set_checksum(blob, 32, 0, 36);  // extended checksum over all 36
  out.rsdp_addr = cfg.base_addr;
  out.blob = std::move(blob);
  return out;
}

}  // namespace gears::vmm::acpi
