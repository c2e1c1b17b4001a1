#include "deploy/plugin_service_host.h"

#include <cstdio>

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
  {
    std::lock_guard lock(mu_);
    if (closed_) return;
    closed_ = true;
    numbers.swap(numbers_);
  }
  dispatcher_.remove_service(id_);  // every number is in this service's range
  if (subs_) subs_->remove_owner(service_);
}

std::vector<uint32_t> PluginServiceHost::hypercalls() const {
  std::lock_guard lock(mu_);
  return numbers_;
}

size_t PluginServiceHost::subscriptions() const { return subs_ ? subs_->count(service_) : 0; }

Expected<std::span<std::uint8_t>> PluginServiceHost::shared_region(std::string_view name) {
  if (!shared_regions_) return ServiceHost::shared_region(name);
  return shared_regions_(name);
}

}  // namespace gears::vmm::deploy
