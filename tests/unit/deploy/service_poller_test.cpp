// A service's data-plane thread (ServiceHost::start_poller): runs while its function reports
// work, sleeps until wake() or its idle period, and is stopped and joined by gears-vmm.
#include "deploy/service_poller.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

namespace gears::vmm::deploy {
namespace {

template <class F>
bool eventually(F done) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

TEST(ServicePollerTest, RunsWhileBusySleepsWhenIdleWakesOnRequest) {
  std::atomic<int> calls{0}, work{5};
  auto p = ServicePoller::start("t", [&] {
    calls++;
    return work.fetch_sub(1) > 0;  // five busy rounds, then idle
  }, std::chrono::seconds(10));
  ASSERT_TRUE(p) << p.error().what();
  ASSERT_TRUE(eventually([&] { return (*p)->sleeps() == 1; }));
  const int after_busy = calls.load();
  EXPECT_EQ(after_busy, 6);
  (*p)->wake();
  ASSERT_TRUE(eventually([&] { return calls.load() == after_busy + 1; }));
  (*p)->stop();
  const int stopped = calls.load();
  (*p)->wake();  // after stop: nothing runs
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(calls.load(), stopped);
}

TEST(ServicePollerTest, IdlePeriodBoundsTheSleep) {
  std::atomic<int> calls{0};
  auto p = ServicePoller::start("t", [&] {
    calls++;
    return false;
  }, std::chrono::milliseconds(1));
  ASSERT_TRUE(p);
  EXPECT_TRUE(eventually([&] { return calls.load() >= 5; }));  // nobody wakes it
}

TEST(ServicePollerTest, AThrowingFunctionDoesNotTakeTheProcessDown) {
  std::atomic<int> calls{0};
  auto p = ServicePoller::start("t", [&]() -> bool {
    calls++;
    throw std::runtime_error("service bug");
  }, std::chrono::milliseconds(1));
  ASSERT_TRUE(p);
  EXPECT_TRUE(eventually([&] { return calls.load() >= 2; }));
  (*p)->stop();
}

}  // namespace
}  // namespace gears::vmm::deploy
