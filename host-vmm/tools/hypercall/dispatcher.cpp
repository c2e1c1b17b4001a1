#include "tools/hypercall/dispatcher.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>

#include "tools/hypercall/vcpu_guest_context.h"

namespace gears::vmm::hypercall {

Expected<void> HypercallDispatcher::add(uint32_t number, HypercallHandler handler) {
  if (!handler) return fail("hypercall handler is empty");
  std::lock_guard lock(mu_);
  if (handlers_.count(number)) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "0x%08x", number);
    return fail(std::string("hypercall ") + buf + " is already registered");
  }
  handlers_.emplace(number, std::make_shared<const HypercallHandler>(std::move(handler)));
  return {};
}

void HypercallDispatcher::remove_service(uint16_t service_id) {
  std::lock_guard lock(mu_);
  std::erase_if(handlers_, [&](const auto& kv) { return GEARS_HC_SERVICE(kv.first) == service_id; });
}

DispatchResult HypercallDispatcher::dispatch(Origin origin, int vcpu, VcpuRegs& regs, GuestMemory& mem) {
  HypercallArgs args;
  const bool user = origin == Origin::guest_user;
  if (user) {
    args.number = regs.rdi;
    const uint64_t r[GEARS_MAX_ARGS] = {regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9};
    std::copy(r, r + GEARS_MAX_ARGS, args.regs);
  } else {
    args.number = regs.rax;
    // RDX carries the doorbell port for `out dx, eax`, so it is skipped (sdk abi/hypercall.h).
    const uint64_t r[GEARS_MAX_ARGS] = {regs.rdi, regs.rsi, regs.r10, regs.r8, regs.r9};
    std::copy(r, r + GEARS_MAX_ARGS, args.regs);
  }
  calls_.fetch_add(1, std::memory_order_relaxed);

  std::shared_ptr<const HypercallHandler> h;
  if (args.number <= UINT32_MAX) {
    std::lock_guard lock(mu_);
    auto it = handlers_.find(static_cast<uint32_t>(args.number));
    if (it != handlers_.end()) h = it->second;
  }
  DispatchResult out;
  out.finish_as_sysret = user;
  if (!h) {
    unknown_.fetch_add(1, std::memory_order_relaxed);
    out.result = -ENOSYS;
  } else {
    VcpuGuestContext ctx(mem, regs, vcpu, origin);
    GuestContext* saved = current_guest_context;
    current_guest_context = &ctx;
    try {
      out.result = (*h)(ctx, args);
    } catch (...) {
      out.result = -EIO;  // a service's exception must not unwind through the vCPU loop
    }
    current_guest_context = saved;
    out.handled = true;
  }
  regs.rax = static_cast<uint64_t>(out.result);
  return out;
}

Expected<void> HypercallDispatcher::register_commands(control::CommandRegistry& registry) {
  return registry.add_stats("hypercall", [this] {
    size_t n = 0;
    {
      std::lock_guard lock(mu_);
      n = handlers_.size();
    }
    return control::Json{{"calls", calls()}, {"unknown", unknown()}, {"registered", n}};
  });
}

}  // namespace gears::vmm::hypercall
