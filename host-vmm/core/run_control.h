// How a VM run ends. The first vCPU (or device) that decides the guest is done records why;
// everyone else is kicked out of KVM_RUN and the main thread reports it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>

namespace gears::vmm {

enum class StopReason { Running, PowerOff, Reboot, TripleFault, Panic, Error, HostRequest };

class RunControl {
 public:
  // First caller wins. A reset or triple fault after the console saw a kernel panic is
  // reported as Panic: with panic=-1 the kernel resets itself after panicking.
  void request_stop(StopReason why, std::string detail = {}) {
    {
      std::lock_guard lock(mu_);
      if (reason_ != StopReason::Running) return;
      if (panic_seen_ && (why == StopReason::Reboot || why == StopReason::TripleFault)) why = StopReason::Panic;
      reason_ = why;
      detail_ = std::move(detail);
      stopping_.store(true);
    }
    cv_.notify_all();
    if (on_stop_) on_stop_();
  }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  void note_panic() {
    std::lock_guard lock(mu_);
    panic_seen_ = true;
  }
  // Called once when a stop is requested (the builder kicks every vCPU). Set before start.
  void set_on_stop(std::function<void()> f) { on_stop_ = std::move(f); }

  StopReason wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return reason_ != StopReason::Running; });
    return reason_;
  }
  StopReason reason() const {
    std::lock_guard lock(mu_);
    return reason_;
  }
  std::string detail() const {
    std::lock_guard lock(mu_);
    return detail_;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  StopReason reason_ = StopReason::Running;
  std::string detail_;
  bool panic_seen_ = false;
  std::atomic<bool> stopping_{false};
  std::function<void()> on_stop_;
};

}  // namespace gears::vmm
