#include "virtio/blk.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "virtio/mmio_transport.h"
#include "virtio/spec.h"
#include "virtio_test_util.h"

namespace gears::vmm::virtio {
namespace {

using test::DriverRing;
using test::FakeIrq;
using test::MmioDriver;
using T = VirtioMmioTransport;

constexpr uint32_t kIn = 0, kOut = 1, kFlush = 4, kGetId = 8;
constexpr uint8_t kOk = 0, kIoErr = 1, kUnsupp = 2;
constexpr uint64_t kSectors = 128;

// Every test runs twice: requests served inline on the "vCPU" (the notify), and scheduled
// (queued by the notify, served by the device's I/O thread in FIFO order).
class BlkTest : public ::testing::TestWithParam<bool> {
 protected:
  static constexpr uint64_t kHdr = 0x100000, kData = 0x110000, kStatus = 0x120000;

  void SetUp() override {
    char tmpl[] = "/tmp/gears-blk-test-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    path = tmpl;
    std::vector<uint8_t> img(kSectors * 512);
    for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i / 512 + i);
    ASSERT_EQ(write(fd, img.data(), img.size()), static_cast<ssize_t>(img.size()));
    ASSERT_EQ(write(fd, "xyz", 3), 3);  // a partial last sector is not exposed
    close(fd);
  }
  void TearDown() override {
    transport.reset();
    unlink(path.c_str());
  }

  void start(bool read_only = false) {
    BlkOptions o;
    o.read_only = read_only;
    if (GetParam()) o.scheduler = disk::SchedulerKind::kFifo;
    o.issuer = [this] { return issuer; };
    auto dev = make_virtio_blk(path, o);
    ASSERT_TRUE(dev) << dev.error().what();
    transport = std::make_unique<T>(mem, irq, std::move(*dev));
    drv = std::make_unique<MmioDriver>(*transport, mem);
    ASSERT_EQ(drv->rd(T::kDeviceId), kDeviceIdBlock);
    ASSERT_TRUE(drv->negotiate(~0ULL));
    drv->setup_queue(0, q);
    drv->driver_ok();
  }

  // One request the way Linux builds it: header, data, status; returns {status, used len}.
  std::pair<uint8_t, uint32_t> request(uint32_t type, uint64_t sector, uint32_t data_len) {
    uint8_t h[16] = {};
    std::memcpy(h, &type, 4);
    std::memcpy(h + 8, &sector, 8);
    EXPECT_TRUE(mem.write(kHdr, h));
    EXPECT_TRUE(mem.write_obj<uint8_t>(kStatus, 0xff));
    const uint16_t data_flags = (type == kOut ? 0 : kDescFWrite) | kDescFNext;
    q.set_desc(0, kHdr, 16, kDescFNext, 1);
    if (data_len) {
      q.set_desc(1, kData, data_len, data_flags, 2);
      q.set_desc(2, kStatus, 1, kDescFWrite);
    } else {
      q.set_desc(1, kStatus, 1, kDescFWrite);
    }
    q.make_avail(0);
    drv->notify(0);
    auto u = wait_used();
    EXPECT_TRUE(u);
    if (!u) return {0xff, 0};
    drv->take_interrupt();
    return {*mem.read_obj<uint8_t>(kStatus), u->second};
  }

  // The next used entry; scheduled requests are completed by the I/O thread, a little later.
  std::optional<std::pair<uint32_t, uint32_t>> wait_used() {
    auto u = q.next_used();
    for (int i = 0; !u && i < 5000; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      u = q.next_used();
    }
    return u;
  }

  std::string path;
  disk::Issuer issuer;  // who the "vCPU" says kicked
  GuestMemory mem = test::make_memory();
  std::shared_ptr<FakeIrq> irq = std::make_shared<FakeIrq>();
  DriverRing q = DriverRing::at(mem, 0x10000, 16);
  std::unique_ptr<T> transport;
  std::unique_ptr<MmioDriver> drv;
};

TEST_P(BlkTest, MissingFileIsAnError) {
  auto dev = make_virtio_blk("/nonexistent/disk.img");
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().what().find("/nonexistent/disk.img"), std::string::npos);
}

// Scheduled requests are counted per issuer (the process or root at the kick); inline ones
// are counted in the totals only (the vCPU serves them without asking who kicked).
TEST_P(BlkTest, StatisticsPerIssuer) {
  start();
  issuer = {disk::kIssuerIsProcess | 7, 0x1234000};
  EXPECT_EQ(request(kIn, 0, 1024).first, kOk);
  EXPECT_EQ(request(kIn, 2, 512).first, kOk);
  issuer = {0x5678000, 0x5678000};
  EXPECT_EQ(request(kOut, 4, 512).first, kOk);
  EXPECT_EQ(request(kIn, kSectors, 512).first, kIoErr);  // out of range: answered inline
  const BlkStats st = dynamic_cast<VirtioBlkDevice&>(transport->device()).stats();
  EXPECT_EQ(st.requests, 4u);
  EXPECT_EQ(st.errors, 1u);
  if (!GetParam()) {
    EXPECT_EQ(st.scheduler, "inline");
    EXPECT_TRUE(st.issuers.empty());
    return;
  }
  EXPECT_EQ(st.scheduler, "fifo");
  ASSERT_EQ(st.issuers.size(), 2u);
  const auto& proc = st.issuers[0].issuer == 0x5678000 ? st.issuers[1] : st.issuers[0];
  const auto& root = st.issuers[0].issuer == 0x5678000 ? st.issuers[0] : st.issuers[1];
  EXPECT_EQ(proc.issuer, disk::kIssuerIsProcess | 7);
  EXPECT_EQ(proc.address_space, 0x1234000u);
  EXPECT_EQ(proc.reads, 2u);
  EXPECT_EQ(proc.sectors, 3u);
  EXPECT_EQ(root.writes, 1u);
  EXPECT_EQ(root.sectors, 1u);
}

// A process that ends while the anticipatory scheduler waits for it: forget() ends the wait
// at once (the window here is 20 s, the test's patience 5 s).
TEST_P(BlkTest, ForgetEndsAnticipation) {
  if (!GetParam()) GTEST_SKIP() << "inline: nothing is anticipated";
  BlkOptions o;
  o.scheduler = disk::SchedulerKind::kAnticipatory;
  o.scheduler_params.window_ns = 20'000'000'000ULL;
  o.issuer = [this] { return issuer; };
  auto dev = make_virtio_blk(path, o);
  ASSERT_TRUE(dev);
  VirtioBlkDevice* blk = dev->get();
  transport = std::make_unique<T>(mem, irq, std::move(*dev));
  drv = std::make_unique<MmioDriver>(*transport, mem);
  ASSERT_TRUE(drv->negotiate(~0ULL));
  drv->setup_queue(0, q);
  drv->driver_ok();
  issuer = {disk::kIssuerIsProcess | 1, 0x1000};
  ASSERT_EQ(request(kIn, 0, 512).first, kOk);  // P's read: the disk now waits for P's next
  issuer = {disk::kIssuerIsProcess | 2, 0x2000};
  std::thread ender([blk] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    blk->forget(disk::kIssuerIsProcess | 1);  // P exits
  });
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(request(kIn, 64, 512).first, kOk);  // Q's read, far away
  ender.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_GE(blk->stats().sched.expired, 1u);
}

TEST_P(BlkTest, CapacityAndFeatures) {
  start();
  uint64_t cap = 0;
  transport->read(T::kConfig, std::span(reinterpret_cast<uint8_t*>(&cap), 8));
  EXPECT_EQ(cap, kSectors);
  const uint64_t f = drv->device_features();
  EXPECT_TRUE(f & feature_bit(9));    // FLUSH
  EXPECT_FALSE(f & feature_bit(5));   // not RO
  EXPECT_GT(drv->rd(T::kConfig + 12), 0u);  // seg_max
}

TEST_P(BlkTest, ReadSectors) {
  start();
  auto [st, len] = request(kIn, 3, 1024);
  EXPECT_EQ(st, kOk);
  EXPECT_EQ(len, 1025u);
  std::array<uint8_t, 1024> got{};
  ASSERT_TRUE(mem.read(kData, got));
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_EQ(got[i], static_cast<uint8_t>((3 * 512 + i) / 512 + 3 * 512 + i)) << i;
}

TEST_P(BlkTest, WriteThenReadBackAndFlush) {
  start();
  std::vector<uint8_t> pattern(512, 0xA5);
  ASSERT_TRUE(mem.write(kData, pattern));
  auto [st, len] = request(kOut, 5, 512);
  EXPECT_EQ(st, kOk);
  EXPECT_EQ(len, 1u);
  EXPECT_EQ(request(kFlush, 0, 0).first, kOk);

  FILE* f = fopen(path.c_str(), "rb");
  ASSERT_TRUE(f);
  std::vector<uint8_t> disk(512);
  ASSERT_EQ(fseek(f, 5 * 512, SEEK_SET), 0);
  ASSERT_EQ(fread(disk.data(), 1, 512, f), 512u);
  fclose(f);
  EXPECT_EQ(disk, pattern);

  ASSERT_TRUE(mem.fill(kData, 0, 512));
  EXPECT_EQ(request(kIn, 5, 512).first, kOk);
  std::vector<uint8_t> back(512);
  ASSERT_TRUE(mem.read(kData, back));
  EXPECT_EQ(back, pattern);
}

TEST_P(BlkTest, OutOfRangeSectorsFail) {
  start();
  EXPECT_EQ(request(kIn, kSectors, 512).first, kIoErr);
  EXPECT_EQ(request(kIn, kSectors - 1, 1024).first, kIoErr);  // straddles the end
  EXPECT_EQ(request(kIn, ~0ULL, 512).first, kIoErr);          // sector*512 would overflow
  EXPECT_EQ(request(kOut, kSectors + 10, 512).first, kIoErr);
  EXPECT_EQ(request(kIn, kSectors - 1, 512).first, kOk);       // the last sector is fine
}

TEST_P(BlkTest, LengthNotAMultipleOfTheSectorFails) {
  start();
  EXPECT_EQ(request(kIn, 0, 100).first, kIoErr);
}

TEST_P(BlkTest, GetIdAndUnsupported) {
  start();
  ASSERT_TRUE(mem.fill(kData, 0xee, 20));
  auto [st, len] = request(kGetId, 0, 20);
  EXPECT_EQ(st, kOk);
  EXPECT_EQ(len, 21u);
  std::array<char, 20> id{};
  ASSERT_TRUE(mem.read(kData, std::span(reinterpret_cast<uint8_t*>(id.data()), id.size())));
  const std::string base = path.substr(path.rfind('/') + 1);
  EXPECT_EQ(std::string(id.data(), strnlen(id.data(), id.size())), base.substr(0, 20));
  EXPECT_EQ(request(11 /* DISCARD */, 0, 0).first, kUnsupp);
}

TEST_P(BlkTest, ReadOnlyRefusesWrites) {
  start(true);
  EXPECT_TRUE(drv->device_features() & feature_bit(5));
  EXPECT_EQ(request(kOut, 0, 512).first, kIoErr);
  EXPECT_EQ(request(kIn, 0, 512).first, kOk);
}

TEST_P(BlkTest, HeaderSplitAcrossDescriptors) {
  start();
  uint8_t h[16] = {};
  const uint32_t type = kIn;
  const uint64_t sector = 1;
  std::memcpy(h, &type, 4);
  std::memcpy(h + 8, &sector, 8);
  ASSERT_TRUE(mem.write(kHdr, std::span<const uint8_t>(h, 6)));
  ASSERT_TRUE(mem.write(kHdr + 0x100, std::span<const uint8_t>(h + 6, 10)));
  q.set_desc(0, kHdr, 6, kDescFNext, 1);
  q.set_desc(1, kHdr + 0x100, 10, kDescFNext, 2);
  q.set_desc(2, kData, 512 + 1, kDescFWrite);  // data and status in one buffer
  q.make_avail(0);
  drv->notify(0);
  auto u = wait_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 513u);
  EXPECT_EQ(*mem.read_obj<uint8_t>(kData + 512), kOk);
  EXPECT_EQ(*mem.read_obj<uint8_t>(kData), static_cast<uint8_t>(512 / 512 + 512));
}

TEST_P(BlkTest, NoStatusBufferIsMalformed) {
  start();
  q.set_desc(0, kHdr, 16, 0);
  q.make_avail(0);
  drv->notify(0);
  auto u = q.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 0u);
  EXPECT_EQ(transport->malformed_chains(), 1u);
}

TEST_P(BlkTest, DataOutsideRamIsDropped) {
  start();
  q.set_desc(0, kHdr, 16, kDescFNext, 1);
  q.set_desc(1, mem.size() - 256, 512, kDescFWrite | kDescFNext, 2);  // runs off RAM
  q.set_desc(2, kStatus, 1, kDescFWrite);
  q.make_avail(0);
  drv->notify(0);
  auto u = q.next_used();
  ASSERT_TRUE(u);
  EXPECT_EQ(u->second, 0u);
  EXPECT_EQ(transport->malformed_chains(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Serve, BlkTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Scheduled" : "Inline"; });

}  // namespace
}  // namespace gears::vmm::virtio
