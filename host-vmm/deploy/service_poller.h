// A service's data-plane thread (ServiceHost::start_poller): calls the service's poll function
// while it reports work, sleeps when it says so until wake() or the idle period. gears-vmm
// owns the thread, so an undeploy can stop it before the plugin's code goes away.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "gears/expected.h"
#include "gears/vmm/service_host.h"

namespace gears::vmm::deploy {

class ServicePoller final : public Poller {
 public:
  static Expected<std::unique_ptr<ServicePoller>> start(std::string name, PollFn poll, std::chrono::microseconds idle);
  ~ServicePoller() override;  // stop()

  void wake() override;
  // Stops the thread and joins it; the poll function is not running when it returns and is
  // destroyed. Idempotent; never from the poller's own thread.
  void stop();

  uint64_t rounds() const { return rounds_.load(std::memory_order_relaxed); }
  uint64_t sleeps() const { return sleeps_.load(std::memory_order_relaxed); }

 private:
  ServicePoller(std::string name, PollFn poll, std::chrono::microseconds idle)
      : name_(std::move(name)), poll_(std::move(poll)), idle_(idle) {}
  void run();

  const std::string name_;
  PollFn poll_;
  const std::chrono::microseconds idle_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool woken_ = false;
  bool stopping_ = false;
  std::atomic<uint64_t> rounds_{0}, sleeps_{0};
  std::thread thread_;
};

}  // namespace gears::vmm::deploy
