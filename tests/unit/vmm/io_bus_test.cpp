#include "core/io_bus.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace gears::vmm {
namespace {

class Recorder : public IoDevice {
 public:
  std::string_view name() const override { return "recorder"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (auto& b : data) b = static_cast<uint8_t>(offset);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    offsets.push_back(offset);
    sizes.push_back(data.size());
  }
  std::vector<uint64_t> offsets;
  std::vector<size_t> sizes;
};

TEST(IoBus, DispatchesByWindowWithOffsets) {
  IoBus bus("pio");
  auto dev = std::make_shared<Recorder>();
  ASSERT_TRUE(bus.add(0x3f8, 8, dev));
  std::array<uint8_t, 1> b{};
  EXPECT_TRUE(bus.read(0x3fd, b));
  EXPECT_EQ(b[0], 5);
  EXPECT_TRUE(bus.write(0x3f8, b));
  EXPECT_EQ(dev->offsets.at(0), 0u);
  EXPECT_FALSE(bus.read(0x400, b));
}

TEST(IoBus, RefusesOverlapsAndAccessesStraddlingAWindow) {
  IoBus bus("mmio");
  ASSERT_TRUE(bus.add(0x1000, 0x100, std::make_shared<Recorder>()));
  EXPECT_FALSE(bus.add(0x10ff, 0x10, std::make_shared<Recorder>()));
  EXPECT_FALSE(bus.add(0x2000, 0, std::make_shared<Recorder>()));
  std::array<uint8_t, 4> w{};
  EXPECT_FALSE(bus.read(0x10fe, w));
}

}  // namespace
}  // namespace gears::vmm
