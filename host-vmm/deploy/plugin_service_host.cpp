#include "deploy/plugin_service_host.h"

#include <cstdio>

#include "deploy/service_poller.h"

namespace gears::vmm::deploy {

namespace {

// A plugin's handler with what keeps its code mapped. Members are destroyed in reverse order:
// the handler (whose std::function manager may be plugin code) before the last reference.
template <class Handler>
struct Guarded {
  std::shared_ptr<PluginServiceHost> keep;
  Handler inner;
};

}  // namespace

void LogRing::add(std::string_view line) {
  std::lock_guard lock(mu_);
  lines_.emplace_back(line.substr(0, max_line_));
  if (lines_.size() > capacity_) lines_.pop_front();
  ++total_;
}

std::vector<std::string> LogRing::last(size_t n) const {
  std::lock_guard lock(mu_);
  const size_t from = lines_.size() > n ? lines_.size() - n : 0;
  return {lines_.begin() + static_cast<std::ptrdiff_t>(from), lines_.end()};
}

uint64_t LogRing::total() const {
  std::lock_guard lock(mu_);
  return total_;
}

PluginServiceHost::PluginServiceHost(std::string service, uint16_t service_id, hypercall::HypercallDispatcher& dispatcher,
                                     SyscallSubscriptions* subscriptions)
    : service_(std::move(service)), id_(service_id), dispatcher_(dispatcher), subs_(subscriptions) {}

Expected<void> PluginServiceHost::register_hypercall(std::uint32_t number, HypercallHandler handler) {
  if (!handler) return fail("hypercall handler is empty");
  if (GEARS_HC_SERVICE(number) != id_) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "hypercall 0x%08x is not in service %u's range", number, id_);
    return fail(buf);
  }
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  auto self = weak_from_this().lock();
  if (!self) return fail("service host is not shared (internal error)");
  auto guarded = std::make_shared<Guarded<HypercallHandler>>(Guarded<HypercallHandler>{std::move(self), std::move(handler)});
  GEARS_TRY(dispatcher_.add(number, [guarded](GuestContext& g, const HypercallArgs& a) -> int64_t {
    guarded->keep->calls_.fetch_add(1, std::memory_order_relaxed);
    return guarded->inner(g, a);
  }));
  numbers_.push_back(number);
  return {};
}

Expected<void> PluginServiceHost::on_syscall(std::span<const std::uint32_t> numbers, SyscallHandler handler) {
  if (!subs_) return fail("syscall events are not available in this gears-vmm");
  if (!handler) return fail("syscall handler is empty");
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  auto self = weak_from_this().lock();
  if (!self) return fail("service host is not shared (internal error)");
  auto guarded = std::make_shared<Guarded<SyscallHandler>>(Guarded<SyscallHandler>{std::move(self), std::move(handler)});
  auto id = subs_->add_syscalls(service_, numbers,
                                [guarded](GuestContext& g, const SyscallEvent& e) { guarded->inner(g, e); });
  if (!id) return fail(id.error());
  return {};
}

Expected<void> PluginServiceHost::on_process(ProcessHandler handler) {
  if (!subs_) return fail("process events are not available in this gears-vmm");
  if (!handler) return fail("process handler is empty");
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  auto self = weak_from_this().lock();
  if (!self) return fail("service host is not shared (internal error)");
  auto guarded = std::make_shared<Guarded<ProcessHandler>>(Guarded<ProcessHandler>{std::move(self), std::move(handler)});
  auto id = subs_->add_process(service_, [guarded](GuestContext& g, const ProcessEvent& e) { guarded->inner(g, e); });
  if (!id) return fail(id.error());
  return {};
}

void PluginServiceHost::log(std::string_view line) {
  // One line each: a plugin's embedded newlines must not forge gears-vmm's own log lines.
  std::string clean(line.substr(0, 1024));
  for (char& c : clean)
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') c = ' ';
  std::fprintf(stderr, "gears-vmm: %s: %s\n", service_.c_str(), clean.c_str());
  logs_.add(clean);
}

void PluginServiceHost::close() {
  std::vector<uint32_t> numbers;
  std::vector<CountersFn> counters;
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    numbers.swap(numbers_);
    counters.swap(counters_);
  }
  // Pollers first (their code may send through a NIC view), then the taps into plugin code.
  // Both objects stay until the destructor: a hypercall handler still running may wake a
  // poller or use a view (it holds this host, so they outlive it); stopped, they do nothing.
  for (auto& p : pollers_) p->stop();
  for (auto& nic : nics_) nic->set_rx_tap({});
  dispatcher_.remove_service(id_);  // every number is in this service's range
  if (subs_) subs_->remove_owner(service_);
}

std::vector<uint32_t> PluginServiceHost::hypercalls() const {
  std::lock_guard lock(mu_);
  return numbers_;
}

size_t PluginServiceHost::subscriptions() const { return subs_ ? subs_->count(service_) : 0; }

// Whatever runs or holds plugin code goes before library_ (the last member, destroyed first)
// can dlclose it. The dispatcher and subscriptions are not touched here (see close()).
PluginServiceHost::~PluginServiceHost() {
  for (auto& p : pollers_) p->stop();
  for (auto& nic : nics_) nic->set_rx_tap({});
  pollers_.clear();
  nics_.clear();
  counters_.clear();
}

Expected<VmGroup*> PluginServiceHost::vm_group(std::string_view name) {
  if (!resources_.vm_groups) return ServiceHost::vm_group(name);
  return resources_.vm_groups(name);
}

Expected<std::span<std::uint8_t>> PluginServiceHost::shared_region(std::string_view name) {
  if (!resources_.shared_regions) return ServiceHost::shared_region(name);
  return resources_.shared_regions(name);
}

Expected<std::span<std::uint8_t>> PluginServiceHost::guest_physical(std::uint64_t gpa, std::uint64_t len) {
  if (!resources_.guest_physical) return ServiceHost::guest_physical(gpa, len);
  return resources_.guest_physical(gpa, len);
}

Expected<OverlayNic*> PluginServiceHost::overlay_nic(std::size_t index) {
  if (!resources_.overlay_nics) return ServiceHost::overlay_nic(index);
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  for (size_t i = 0; i < nics_.size(); ++i)
    if (nic_index_[i] == index) return nics_[i].get();
  auto nic = resources_.overlay_nics(index);
  if (!nic) return fail(nic.error());
  nics_.push_back(std::move(*nic));
  nic_index_.push_back(index);
  return nics_.back().get();
}

Expected<Poller*> PluginServiceHost::start_poller(std::string_view name, PollFn poll, std::chrono::microseconds idle) {
  if (!poll) return fail("poller function is empty");
  if (idle <= std::chrono::microseconds::zero() || idle > std::chrono::seconds(10))
    return fail("poller idle period must be in (0, 10 s]");
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  if (pollers_.size() >= kMaxPollers) return fail("a service may run at most " + std::to_string(kMaxPollers) + " pollers");
  auto p = ServicePoller::start(service_ + "/" + std::string(name), std::move(poll), idle);
  if (!p) return fail(p.error());
  pollers_.push_back(std::move(*p));
  return pollers_.back().get();
}

Expected<void> PluginServiceHost::add_counters(CountersFn counters) {
  if (!counters) return fail("counters function is empty");
  std::lock_guard lock(mu_);
  if (closed_) return fail("service " + service_ + " is unloaded");
  counters_.push_back(std::move(counters));
  return {};
}

std::vector<std::pair<std::string, std::uint64_t>> PluginServiceHost::counters() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, std::uint64_t>> out;
  for (const CountersFn& f : counters_) {
    try {
      auto part = f();
      out.insert(out.end(), part.begin(), part.end());
    } catch (...) {
      out.emplace_back("counters_failed", 1);
    }
  }
  return out;
}

}  // namespace gears::vmm::deploy
