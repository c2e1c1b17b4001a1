// The ServiceHost one deployed VMM half talks to (sdk/include/gears/vmm/service_host.h):
// hypercalls go into the HypercallDispatcher, syscall/process handlers into
// SyscallSubscriptions, log lines to stderr ("gears-vmm: <service>: line") and a bounded ring
// the `services` command shows.
//
// Every handler it registers is wrapped so that it holds this host, and the host holds the
// plugin library: a vCPU thread inside a handler keeps the plugin mapped even while the
// service is being undeployed; the last reference dlcloses it. close() takes the handlers out
// (the dispatcher and subscriptions must outlive close(); the destructor touches neither).
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <span>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "deploy/plugin_library.h"
#include "deploy/syscall_subscriptions.h"
#include "gears/vmm/service_host.h"
#include "tools/hypercall/dispatcher.h"

namespace gears::vmm::deploy {

// This gears-vmm's --shm regions by name (host mapping), for ServiceHost::shared_region.
using SharedRegionLookup = std::function<Expected<std::span<std::uint8_t>>(std::string_view name)>;

// The last lines a service logged (bounded in count and line length), for any thread.
class LogRing {
 public:
  explicit LogRing(size_t capacity = 64, size_t max_line = 1024) : capacity_(capacity), max_line_(max_line) {}
  void add(std::string_view line);
  std::vector<std::string> last(size_t n) const;
  uint64_t total() const;

 private:
  const size_t capacity_, max_line_;
  mutable std::mutex mu_;
  std::deque<std::string> lines_;
  uint64_t total_ = 0;
};

class PluginServiceHost final : public ServiceHost, public std::enable_shared_from_this<PluginServiceHost> {
 public:
  // `subscriptions` may be null (no syscall/process events in this gears-vmm).
  PluginServiceHost(std::string service, uint16_t service_id, hypercall::HypercallDispatcher& dispatcher,
                    SyscallSubscriptions* subscriptions);

  // The library whose code the registered handlers run; kept until the last handler is gone.
  void bind(std::shared_ptr<PluginLibrary> library) { library_ = std::move(library); }

  Expected<void> register_hypercall(std::uint32_t number, HypercallHandler handler) override;
  Expected<void> on_syscall(std::span<const std::uint32_t> numbers, SyscallHandler handler) override;
  Expected<void> on_process(ProcessHandler handler) override;
  void log(std::string_view line) override;
  Expected<std::span<std::uint8_t>> shared_region(std::string_view name) override;
  void set_shared_regions(SharedRegionLookup lookup) { shared_regions_ = std::move(lookup); }

  // Removes every hypercall and subscription of this service; later registrations fail.
  void close();

  const LogRing& logs() const { return logs_; }
  uint64_t hypercall_calls() const { return calls_.load(std::memory_order_relaxed); }
  std::vector<uint32_t> hypercalls() const;
  size_t subscriptions() const;

 private:
  const std::string service_;
  const uint16_t id_;
  hypercall::HypercallDispatcher& dispatcher_;
  SyscallSubscriptions* subs_;
  mutable std::mutex mu_;
  bool closed_ = false;
  std::vector<uint32_t> numbers_;
  LogRing logs_;
  std::atomic<uint64_t> calls_{0};
  SharedRegionLookup shared_regions_;
  // Last, so it is destroyed first: the plugin's static destructors (dlclose) may still log.
  std::shared_ptr<PluginLibrary> library_;
};

}  // namespace gears::vmm::deploy
