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
#include <chrono>
#include <string>
#include <vector>

#include "deploy/plugin_library.h"
#include "deploy/syscall_subscriptions.h"
#include "gears/vmm/service_host.h"
#include "tools/hypercall/dispatcher.h"

namespace gears::vmm::deploy {

// This gears-vmm's --shm regions by name (host mapping), for ServiceHost::shared_region.
using SharedRegionLookup = std::function<Expected<std::span<std::uint8_t>>(std::string_view name)>;
// The VM group of this gears-vmm's --shm region by name, for ServiceHost::vm_group.
using VmGroupLookup = std::function<Expected<VmGroup*>(std::string_view name)>;
// Guest RAM by guest-physical range (host mapping), for ServiceHost::guest_physical.
using GuestPhysicalLookup = std::function<Expected<std::span<std::uint8_t>>(std::uint64_t gpa, std::uint64_t len)>;
// A new view of NIC `index` for one service (ServiceHost::overlay_nic).
using OverlayNicFactory = std::function<Expected<std::unique_ptr<OverlayNic>>(std::size_t index)>;

// What of the VM a service may reach; a null member: not available in this gears-vmm.
struct HostResources {
  SharedRegionLookup shared_regions;
  VmGroupLookup vm_groups;
  GuestPhysicalLookup guest_physical;
  OverlayNicFactory overlay_nics;
};

class ServicePoller;

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

inline constexpr size_t kMaxPollers = 4;

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
  Expected<VmGroup*> vm_group(std::string_view name) override;
  Expected<std::span<std::uint8_t>> guest_physical(std::uint64_t gpa, std::uint64_t len) override;
  Expected<OverlayNic*> overlay_nic(std::size_t index) override;
  Expected<Poller*> start_poller(std::string_view name, PollFn poll, std::chrono::microseconds idle) override;
  Expected<void> add_counters(CountersFn counters) override;
  void set_resources(HostResources resources) { resources_ = std::move(resources); }

  // Removes every hypercall, subscription, receive tap and counter of this service and stops
  // its pollers; later registrations fail. Not from a poller's own thread.
  void close();
  ~PluginServiceHost() override;

  // The service's counters (empty once closed), in the order it gave them.
  std::vector<std::pair<std::string, std::uint64_t>> counters() const;

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
  HostResources resources_;
  std::vector<std::unique_ptr<OverlayNic>> nics_;   // views handed out, by index
  std::vector<size_t> nic_index_;
  std::vector<std::unique_ptr<ServicePoller>> pollers_;
  std::vector<CountersFn> counters_;
  // Last, so it is destroyed first: the plugin's static destructors (dlclose) may still log.
  std::shared_ptr<PluginLibrary> library_;
};

}  // namespace gears::vmm::deploy
