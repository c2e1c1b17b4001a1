#include "core/guest_memory.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <limits>

namespace gears::vmm {
namespace {

TEST(GuestMemory, RoundsUpAndMapsOneLowRegion) {
  auto mem = GuestMemory::create(3 << 20);
  ASSERT_TRUE(mem) << mem.error().what();
  EXPECT_EQ(mem->size(), 4u << 20);
  ASSERT_EQ(mem->regions().size(), 1u);
  EXPECT_EQ(mem->regions()[0].gpa, 0u);
}

TEST(GuestMemory, ZeroSizeIsAnError) { EXPECT_FALSE(GuestMemory::create(0)); }

TEST(GuestMemory, ReadBackWhatWasWritten) {
  auto mem = GuestMemory::create(4 << 20);
  ASSERT_TRUE(mem);
  ASSERT_TRUE(mem->write_obj<uint64_t>(0x1000, 0x1122334455667788ULL));
  auto v = mem->read_obj<uint64_t>(0x1000);
  ASSERT_TRUE(v);
  EXPECT_EQ(*v, 0x1122334455667788ULL);
}

TEST(GuestMemory, RefusesOutOfRangeAccesses) {
  auto mem = GuestMemory::create(4 << 20);
  ASSERT_TRUE(mem);
  const uint64_t end = mem->size();
  std::array<uint8_t, 16> buf{};
  EXPECT_TRUE(mem->read(end - 16, buf));
  EXPECT_FALSE(mem->read(end - 15, buf));               // straddles the end
  EXPECT_FALSE(mem->read(end, buf));                    // just past the end
  EXPECT_FALSE(mem->write(0xFEE0'0000, buf));           // MMIO, not RAM
  EXPECT_FALSE(mem->span(std::numeric_limits<uint64_t>::max() - 4, 16));  // would wrap
  EXPECT_FALSE(mem->span(0, std::numeric_limits<uint64_t>::max()));       // huge length
  auto err = mem->read_obj<uint32_t>(end);
  ASSERT_FALSE(err);
  EXPECT_NE(err.error().message.find("outside guest RAM"), std::string::npos);
}

TEST(GuestMemory, SplitsAroundTheMmioHole) {
  // Only address space is reserved (MAP_NORESERVE), so 4 GiB is cheap here.
  auto mem = GuestMemory::create(4ULL << 30);
  ASSERT_TRUE(mem) << mem.error().what();
  ASSERT_EQ(mem->regions().size(), 2u);
  EXPECT_EQ(mem->regions()[1].gpa, GuestMemory::kHighRamStart);
  EXPECT_TRUE(mem->contains(GuestMemory::kLowRamEnd - 8, 8));
  EXPECT_FALSE(mem->contains(GuestMemory::kLowRamEnd - 8, 16));  // no RAM in the hole
  EXPECT_TRUE(mem->contains(GuestMemory::kHighRamStart, 4096));
}

}  // namespace
}  // namespace gears::vmm
