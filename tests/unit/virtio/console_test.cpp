#include "virtio/console.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <memory>
#include <string>

#include "virtio/mmio_transport.h"
#include "virtio/spec.h"
#include "virtio_test_util.h"

namespace gears::vmm::virtio {
namespace {

using test::DriverRing;
using test::FakeIrq;
using test::MmioDriver;
using T = VirtioMmioTransport;

struct Pipe {
  int r = -1, w = -1;
  Pipe() {
    int fds[2];
    EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0);
    r = fds[0];
    w = fds[1];
  }
  ~Pipe() {
    if (r >= 0) close(r);
    if (w >= 0) close(w);
  }
};

class ConsoleTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kBuf = 0x100000;

  void start() {
    transport = std::make_unique<T>(mem, irq, make_virtio_console(out.w, in.r));
    drv = std::make_unique<MmioDriver>(*transport, mem);
    ASSERT_EQ(drv->rd(T::kDeviceId), kDeviceIdConsole);
    ASSERT_TRUE(drv->negotiate(~0ULL));
    drv->setup_queue(0, rxq);
    drv->setup_queue(1, txq);
    drv->driver_ok();
    ASSERT_FALSE(drv->rd(T::kStatus) & kStatusNeedsReset);
  }

  // Posts one receive buffer of `len` bytes at `gpa`.
  void post_rx(uint16_t desc, uint64_t gpa, uint32_t len) {
    rxq.set_desc(desc, gpa, len, kDescFWrite);
    rxq.make_avail(desc);
    drv->notify(0);
  }

  GuestMemory mem = test::make_memory();
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  Pipe out, in;
  DriverRing rxq = DriverRing::at(mem, 0x10000, 8);
  DriverRing txq = DriverRing::at(mem, 0x20000, 8);
  std::unique_ptr<T> transport;
  std::unique_ptr<MmioDriver> drv;
};

TEST_F(ConsoleTest, ConfigHasOnePort) {
  start();
  EXPECT_EQ(drv->rd(T::kConfig + 4), 1u);  // max_nr_ports
  EXPECT_EQ(drv->device_features() & 0xffff'ffffULL & ~(feature_bit(kFIndirectDesc) | feature_bit(kFEventIdx)), 0u);
}

TEST_F(ConsoleTest, TransmitReachesOutFd) {
  start();
  const std::string a = "hello ", b = "console\n";
  ASSERT_TRUE(mem.write(kBuf, std::span(reinterpret_cast<const uint8_t*>(a.data()), a.size())));
  ASSERT_TRUE(mem.write(kBuf + 0x1000, std::span(reinterpret_cast<const uint8_t*>(b.data()), b.size())));
  txq.set_desc(0, kBuf, static_cast<uint32_t>(a.size()), kDescFNext, 1);
  txq.set_desc(1, kBuf + 0x1000, static_cast<uint32_t>(b.size()), 0);
  txq.make_avail(0);
  drv->notify(1);

  std::array<char, 64> got{};
  ssize_t n = read(out.r, got.data(), got.size());
  ASSERT_EQ(n, static_cast<ssize_t>(a.size() + b.size()));
  EXPECT_EQ(std::string(got.data(), static_cast<size_t>(n)), a + b);
  auto u = txq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  EXPECT_TRUE(irq->level());
  EXPECT_EQ(drv->take_interrupt(), kIsrUsedBuffer);
}

TEST_F(ConsoleTest, InputFillsReceiveBuffer) {
  start();
  post_rx(0, kBuf, 64);
  ASSERT_EQ(write(in.w, "ls -l\n", 6), 6);
  ASSERT_TRUE(irq->wait_for(true));
  auto u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 0u);
  ASSERT_EQ(u->second, 6u);
  std::array<char, 6> got{};
  ASSERT_TRUE(mem.read(kBuf, std::span(reinterpret_cast<uint8_t*>(got.data()), got.size())));
  EXPECT_EQ(std::string(got.data(), got.size()), "ls -l\n");
}

TEST_F(ConsoleTest, InputWaitsForBuffersAndSplitsAcrossThem) {
  start();
  // Typed before the guest posted any buffer: held by the device, not lost.
  ASSERT_EQ(write(in.w, "abcdefgh", 8), 8);
  post_rx(0, kBuf, 5);
  ASSERT_TRUE(irq->wait_for(true));
  auto u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 5u);
  drv->take_interrupt();
  post_rx(1, kBuf + 0x1000, 16);
  ASSERT_TRUE(irq->wait_for(true));
  u = rxq.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->first, 1u);
  ASSERT_EQ(u->second, 3u);
  std::array<char, 8> got{};
  ASSERT_TRUE(mem.read(kBuf, std::span(reinterpret_cast<uint8_t*>(got.data()), 5)));
  ASSERT_TRUE(mem.read(kBuf + 0x1000, std::span(reinterpret_cast<uint8_t*>(got.data() + 5), 3)));
  EXPECT_EQ(std::string(got.data(), 8), "abcdefgh");
}

TEST_F(ConsoleTest, NoInputFdIsFine) {
  transport = std::make_unique<T>(mem, irq, make_virtio_console(out.w, -1));
  drv = std::make_unique<MmioDriver>(*transport, mem);
  ASSERT_TRUE(drv->negotiate(~0ULL));
  drv->setup_queue(0, rxq);
  drv->setup_queue(1, txq);
  drv->driver_ok();
  post_rx(0, kBuf, 64);
  EXPECT_EQ(rxq.used_idx(), 0);  // nothing to deliver, buffer stays with the device
}

}  // namespace
}  // namespace gears::vmm::virtio
