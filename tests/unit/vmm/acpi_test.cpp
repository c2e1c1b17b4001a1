// ACPI table builders and the AML writer: lengths, checksums, and known byte sequences.
#include <gtest/gtest.h>

#include <cstring>

#include "acpi/aml.h"
#include "acpi/tables.h"
#include "x86/layout.h"

namespace gears::vmm::acpi {
namespace {

uint32_t u32(const std::vector<uint8_t>& t, size_t off) {
  uint32_t v;
  std::memcpy(&v, t.data() + off, 4);
  return v;
}
uint64_t u64(const std::vector<uint8_t>& t, size_t off) {
  uint64_t v;
  std::memcpy(&v, t.data() + off, 8);
  return v;
}
bool contains(const std::vector<uint8_t>& hay, const std::vector<uint8_t>& needle) {
  return std::search(hay.begin(), hay.end(), needle.begin(), needle.end()) != hay.end();
}

TEST(Aml, PkgLengthEncodings) {
  EXPECT_EQ(aml::pkg_length(10), (aml::Bytes{11}));
  EXPECT_EQ(aml::pkg_length(62), (aml::Bytes{63}));
  // 63 content bytes + 2 length bytes = 65 = 0x41: lead byte 0x40 | 1, then 0x04.
  EXPECT_EQ(aml::pkg_length(63), (aml::Bytes{0x41, 0x04}));
  EXPECT_EQ(aml::pkg_length(0x1000), (aml::Bytes{0x83, 0x00, 0x01}));  // 0x1003
}

TEST(Aml, Integers) {
  EXPECT_EQ(aml::integer(0), (aml::Bytes{0x00}));
  EXPECT_EQ(aml::integer(1), (aml::Bytes{0x01}));
  EXPECT_EQ(aml::integer(5), (aml::Bytes{0x0a, 0x05}));
  EXPECT_EQ(aml::integer(0x1234), (aml::Bytes{0x0b, 0x34, 0x12}));
  EXPECT_EQ(aml::integer(0xd0000000), (aml::Bytes{0x0c, 0x00, 0x00, 0x00, 0xd0}));
  EXPECT_EQ(aml::integer(0x100000000ULL).size(), 9u);
}

TEST(Aml, NamesAndS5Package) {
  EXPECT_EQ(aml::name_string("\\_SB_"), (aml::Bytes{'\\', '_', 'S', 'B', '_'}));
  EXPECT_EQ(aml::name_string("_SB.V0"), (aml::Bytes{0x2e, '_', 'S', 'B', '_', 'V', '0', '_', '_'}));
  // Name(_S5_, Package(){5, 0, 0, 0})
  auto s5 = aml::name("_S5_", aml::package({aml::integer(5), aml::integer(0), aml::integer(0), aml::integer(0)}));
  EXPECT_EQ(s5, (aml::Bytes{0x08, '_', 'S', '5', '_', 0x12, 0x07, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00}));
}

TEST(Aml, VirtioMmioDeviceBytes) {
  // Device(V000){Name(_HID,"LNRO0005") Name(_CRS, ResourceTemplate(){Memory32Fixed(RW,
  // 0xd0000000, 0x200) Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive){5}})}
  auto crs = aml::resource_template({aml::memory32_fixed(0xd0000000, 0x200), aml::interrupt(5, true, false)});
  const aml::Bytes mem32 = {0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00};
  const aml::Bytes irq = {0x89, 0x06, 0x00, 0x01, 0x01, 0x05, 0x00, 0x00, 0x00};
  EXPECT_TRUE(contains(crs, mem32));
  EXPECT_TRUE(contains(crs, irq));
  // Buffer: 0x11, PkgLength, BufferSize (byte 12+9+2 = 23 = 0x17), then the descriptors + end tag.
  EXPECT_EQ(crs[0], 0x11);
  EXPECT_EQ(crs[2], 0x0a);
  EXPECT_EQ(crs[3], 23);
  EXPECT_EQ(crs[crs.size() - 2], 0x79);
  uint8_t sum = 0;
  for (size_t i = 4; i < crs.size(); ++i) sum = static_cast<uint8_t>(sum + crs[i]);
  EXPECT_EQ(sum, 0);  // resource template checksum
  auto dev = aml::device("V000", aml::name("_HID", aml::string("LNRO0005")));
  EXPECT_EQ(dev[0], 0x5b);
  EXPECT_EQ(dev[1], 0x82);
  EXPECT_EQ(dev[2], dev.size() - 2);  // PkgLength counts itself and what follows
  EXPECT_TRUE(contains(dev, aml::Bytes{'L', 'N', 'R', 'O', '0', '0', '0', '5', 0}));
}

class AcpiTables : public ::testing::Test {
 protected:
  Tables t = build_tables({x86::kAcpiAddr, 2, {{0xd0000000, 0x200, 5}, {0xd0001000, 0x200, 6}}});
  std::vector<uint8_t> table_at(uint64_t addr) {
    size_t off = addr - x86::kAcpiAddr;
    uint32_t len = u32(t.blob, off + 4);
    return std::vector<uint8_t>(t.blob.begin() + static_cast<long>(off), t.blob.begin() + static_cast<long>(off + len));
  }
};

TEST_F(AcpiTables, RsdpPointsToXsdtWithValidChecksums) {
  EXPECT_EQ(t.rsdp_addr, x86::kAcpiAddr);
  EXPECT_EQ(std::memcmp(t.blob.data(), "RSD PTR ", 8), 0);
  EXPECT_EQ(t.blob[15], 2);
  EXPECT_EQ(sum_bytes(t.blob.data(), 20), 0);
  EXPECT_EQ(sum_bytes(t.blob.data(), 36), 0);
  EXPECT_EQ(u64(t.blob, 24), t.xsdt_addr);
}

TEST_F(AcpiTables, EveryTableSumsToZeroAndXsdtListsFadtAndMadt) {
  for (uint64_t a : {t.xsdt_addr, t.fadt_addr, t.dsdt_addr, t.madt_addr}) {
    auto tbl = table_at(a);
    EXPECT_EQ(sum_bytes(tbl.data(), tbl.size()), 0) << std::string(tbl.begin(), tbl.begin() + 4);
    EXPECT_EQ(a % 16, 0u);
  }
  auto xsdt = table_at(t.xsdt_addr);
  ASSERT_EQ(xsdt.size(), 36u + 16u);
  EXPECT_EQ(u64(xsdt, 36), t.fadt_addr);
  EXPECT_EQ(u64(xsdt, 44), t.madt_addr);
}

TEST_F(AcpiTables, FadtIsHwReducedWithSleepAndResetRegisters) {
  auto f = table_at(t.fadt_addr);
  ASSERT_EQ(f.size(), 276u);
  EXPECT_EQ(std::memcmp(f.data(), "FACP", 4), 0);
  EXPECT_EQ(f[8], 6);
  uint32_t flags = u32(f, 112);
  EXPECT_TRUE(flags & (1u << 20));  // HW_REDUCED_ACPI
  EXPECT_TRUE(flags & (1u << 10));  // RESET_REG_SUP
  uint16_t boot_arch = static_cast<uint16_t>(f[109] | (f[110] << 8));
  EXPECT_FALSE(boot_arch & 0x2);    // no 8042
  EXPECT_TRUE(boot_arch & 0x4);     // no VGA
  EXPECT_EQ(f[116], 1);             // reset register in I/O space
  EXPECT_EQ(f[117], 8);
  EXPECT_EQ(u64(f, 120), x86::kAcpiResetPort);
  EXPECT_EQ(f[128], x86::kAcpiResetValue);
  EXPECT_EQ(u64(f, 140), t.dsdt_addr);
  EXPECT_EQ(f[244], 1);
  EXPECT_EQ(u64(f, 248), x86::kAcpiSleepControlPort);
  EXPECT_EQ(u64(f, 260), x86::kAcpiSleepStatusPort);
}

TEST_F(AcpiTables, MadtHasOneLapicPerVcpuAndTheIoapic) {
  auto m = table_at(t.madt_addr);
  EXPECT_EQ(u32(m, 36), x86::kLapicAddr);
  size_t lapics = 0, ioapics = 0;
  for (size_t off = 44; off + 2 <= m.size(); off += m[off + 1]) {
    ASSERT_GT(m[off + 1], 0);
    if (m[off] == 0) {
      EXPECT_EQ(m[off + 3], lapics);  // APIC id = vCPU id
      EXPECT_EQ(m[off + 4] & 1, 1);
      ++lapics;
    }
    if (m[off] == 1) {
      EXPECT_EQ(u32(m, off + 4), x86::kIoApicAddr);
      EXPECT_EQ(u32(m, off + 8), 0u);
      ++ioapics;
    }
  }
  EXPECT_EQ(lapics, 2u);
  EXPECT_EQ(ioapics, 1u);
}

TEST_F(AcpiTables, DsdtHasS5Com1AndOneDevicePerWindow) {
  auto d = table_at(t.dsdt_addr);
  EXPECT_TRUE(contains(d, {'_', 'S', '5', '_', 0x12}));
  EXPECT_TRUE(contains(d, {'P', 'N', 'P', '0', '5', '0', '1', 0}));
  EXPECT_TRUE(contains(d, {'V', '0', '0', '0'}));
  EXPECT_TRUE(contains(d, {'V', '0', '0', '1'}));
  EXPECT_TRUE(contains(d, {0x86, 0x09, 0x00, 0x01, 0x00, 0x10, 0x00, 0xd0}));  // second window
  EXPECT_TRUE(contains(d, {0x89, 0x06, 0x00, 0x01, 0x01, 0x06, 0x00, 0x00, 0x00}));  // GSI 6, level
}

TEST(AcpiTablesNoDevices, StillValid) {
  Tables t = build_tables({x86::kAcpiAddr, 1, {}});
  EXPECT_EQ(sum_bytes(t.blob.data(), 36), 0);
  EXPECT_LT(t.blob.size(), x86::kAcpiMax);
}

}  // namespace
}  // namespace gears::vmm::acpi
