// Zero page, e820 map, initrd placement and identity page tables.
#include <asm/bootparam.h>
#include <gtest/gtest.h>

#include <cstring>

#include "x86/boot_params.h"
#include "x86/layout.h"
#include "x86/page_tables.h"

namespace gears::vmm::x86 {
namespace {

BzImage small_kernel() {
  BzImage k;
  k.version = 0x020f;
  k.cmdline_size = 2047;
  k.init_size = 0x200000;
  k.initrd_addr_max = 0x7fffffff;
  k.setup_header.assign(0x268 - 0x1f1, 0);
  std::memcpy(k.setup_header.data() + (0x202 - 0x1f1), "HdrS", 4);
  k.kernel.assign(0x1000, 0xcc);
  return k;
}

TEST(E820, SplitsAroundLegacyHoleAndMmioHole) {
  std::vector<MemoryRegion> regions = {{0, GuestMemory::kLowRamEnd, nullptr, 0},
                                       {GuestMemory::kHighRamStart, 1ULL << 30, nullptr, 0}};
  auto e = make_e820(regions);
  ASSERT_EQ(e.size(), 4u);
  EXPECT_EQ(e[0].addr, 0u);
  EXPECT_EQ(e[0].size, kEbdaStart);
  EXPECT_EQ(e[0].type, kE820Ram);
  EXPECT_EQ(e[1].type, kE820Reserved);
  EXPECT_EQ(e[1].addr + e[1].size, kKernelLoadAddr);
  EXPECT_EQ(e[2].addr, kKernelLoadAddr);
  EXPECT_EQ(e[2].addr + e[2].size, GuestMemory::kLowRamEnd);  // nothing in the MMIO hole
  EXPECT_EQ(e[3].addr, GuestMemory::kHighRamStart);
  EXPECT_EQ(e[3].size, 1ULL << 30);
}

TEST(InitrdPlacement, TopOfLowRamPageAligned) {
  auto a = place_initrd(0x1234, 0x400000, 256 << 20, 0x7fffffff);
  ASSERT_TRUE(a);
  EXPECT_EQ(*a % 0x1000, 0u);
  EXPECT_LE(*a + 0x1234, 256u << 20);
  EXPECT_GE(*a + 0x1000 + 0x1234, 256u << 20);
}

TEST(InitrdPlacement, HonoursInitrdAddrMax) {
  auto a = place_initrd(0x1000, 0x400000, 1ULL << 32, 0x37ffffff);
  ASSERT_TRUE(a);
  EXPECT_LE(*a + 0x1000, 0x38000000u);
}

TEST(InitrdPlacement, TooLargeIsAClearError) {
  auto a = place_initrd(300 << 20, 0x400000, 256 << 20, 0x7fffffff);
  ASSERT_FALSE(a);
  EXPECT_NE(a.error().what().find("does not fit"), std::string::npos);
  EXPECT_FALSE(place_initrd(250 << 20, 10 << 20, 256 << 20, 0x7fffffff));  // would overlap the kernel
}

TEST(BootParams, ZeroPageFields) {
  auto mem = GuestMemory::create(64 << 20);
  ASSERT_TRUE(mem);
  std::vector<uint8_t> initrd(5000, 0xab);
  auto r = setup_boot(*mem, small_kernel(), "console=ttyS0 quiet", initrd, 0xe0000);
  ASSERT_TRUE(r) << r.error().what();
  auto bp = mem->read_obj<boot_params>(kZeroPageAddr);
  ASSERT_TRUE(bp);
  EXPECT_EQ(bp->hdr.type_of_loader, 0xff);
  EXPECT_TRUE(bp->hdr.loadflags & LOADED_HIGH);
  EXPECT_TRUE(bp->hdr.loadflags & CAN_USE_HEAP);
  EXPECT_EQ(bp->hdr.cmd_line_ptr, kCmdlineAddr);
  EXPECT_EQ(bp->hdr.ramdisk_image, r->initrd_addr);
  EXPECT_EQ(bp->hdr.ramdisk_size, 5000u);
  EXPECT_EQ(bp->acpi_rsdp_addr, 0xe0000u);
  EXPECT_EQ(bp->e820_entries, 3);
  EXPECT_EQ(bp->e820_table[2].addr + bp->e820_table[2].size, 64u << 20);
  char cmd[32] = {};
  ASSERT_TRUE(mem->read(kCmdlineAddr, std::span<uint8_t>(reinterpret_cast<uint8_t*>(cmd), sizeof cmd - 1)));
  EXPECT_STREQ(cmd, "console=ttyS0 quiet");
  auto byte = mem->read_obj<uint8_t>(r->initrd_addr + 4999);
  ASSERT_TRUE(byte);
  EXPECT_EQ(*byte, 0xab);
  auto kbyte = mem->read_obj<uint8_t>(kKernelLoadAddr);
  ASSERT_TRUE(kbyte);
  EXPECT_EQ(*kbyte, 0xcc);
}

TEST(BootParams, CommandLineTooLong) {
  auto mem = GuestMemory::create(64 << 20);
  ASSERT_TRUE(mem);
  EXPECT_FALSE(setup_boot(*mem, small_kernel(), std::string(3000, 'x'), {}, 0));
}

TEST(BootParams, KernelLargerThanMemory) {
  auto mem = GuestMemory::create(4 << 20);
  ASSERT_TRUE(mem);
  auto k = small_kernel();
  k.init_size = 64 << 20;
  EXPECT_FALSE(setup_boot(*mem, k, "", {}, 0));
}

TEST(PageTables, IdentityMaps4GiBWith2MiBPages) {
  auto mem = GuestMemory::create(16 << 20);
  ASSERT_TRUE(mem);
  auto cr3 = build_identity_page_tables(*mem, kPml4Addr);
  ASSERT_TRUE(cr3);
  EXPECT_EQ(*cr3, kPml4Addr);
  auto pml4e = mem->read_obj<uint64_t>(kPml4Addr);
  ASSERT_TRUE(pml4e);
  EXPECT_EQ(*pml4e, (kPml4Addr + 0x1000) | 3);
  // Walk a few addresses as the MMU would.
  for (uint64_t va : {0x0ULL, 0x100000ULL, 0x7fe00000ULL, 0xfee00000ULL, 0xffffffffULL}) {
    auto pdpte = mem->read_obj<uint64_t>((*pml4e & ~0xfffULL) + ((va >> 30) & 511) * 8);
    ASSERT_TRUE(pdpte);
    ASSERT_TRUE(*pdpte & kPtePresent);
    auto pde = mem->read_obj<uint64_t>((*pdpte & ~0xfffULL) + ((va >> 21) & 511) * 8);
    ASSERT_TRUE(pde);
    EXPECT_TRUE(*pde & kPteLarge);
    EXPECT_EQ((*pde & ~0x1fffffULL & ((1ULL << 52) - 1)) | (va & 0x1fffff), va);
  }
}

}  // namespace
}  // namespace gears::vmm::x86
