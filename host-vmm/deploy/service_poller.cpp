#include "deploy/service_poller.h"

#include <pthread.h>

#include <cstdio>

namespace gears::vmm::deploy {

Expected<std::unique_ptr<ServicePoller>> ServicePoller::start(std::string name, PollFn poll,
                                                              std::chrono::microseconds idle) {
  std::unique_ptr<ServicePoller> p(new ServicePoller(std::move(name), std::move(poll), idle));
  try {
    p->thread_ = std::thread([raw = p.get()] { raw->run(); });
  } catch (const std::system_error& e) {
    return fail("cannot start poller " + p->name_ + ": " + e.what());
  }
  // Thread names are at most 15 characters; "poll:" plus the start of the service's name.
  pthread_setname_np(p->thread_.native_handle(), ("poll:" + p->name_).substr(0, 15).c_str());
  return p;
}

ServicePoller::~ServicePoller() { stop(); }

void ServicePoller::wake() {
  {
    std::lock_guard lk(mu_);
    woken_ = true;
  }
  cv_.notify_one();
}

void ServicePoller::stop() {
  {
    std::lock_guard lk(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
  poll_ = nullptr;  // may be plugin code: gone before the plugin is
}

void ServicePoller::run() {
  for (;;) {
    {
      std::lock_guard lk(mu_);
      if (stopping_) return;
      woken_ = false;
    }
    bool again = false;
    try {
      again = poll_();
    } catch (...) {
      // A service's exception must not take gears-vmm down; the poller sleeps and retries.
      std::fprintf(stderr, "gears-vmm: poller %s: the poll function threw; retrying after its idle period\n",
                   name_.c_str());
    }
    rounds_.fetch_add(1, std::memory_order_relaxed);
    if (again) continue;
    std::unique_lock lk(mu_);
    sleeps_.fetch_add(1, std::memory_order_relaxed);
    cv_.wait_for(lk, idle_, [this] { return woken_ || stopping_; });
  }
}

}  // namespace gears::vmm::deploy
