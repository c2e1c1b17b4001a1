#include "deploy/syscall_subscriptions.h"

#include <algorithm>

#include "tools/hypercall/vcpu_guest_context.h"
#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::deploy {

namespace sys = proctrack::linux_x86_64;

SyscallSubscriptions::~SyscallSubscriptions() {
  // Give the numbers back, so the selection outlives no subscriber.
  if (!exits_) return;
  for (const auto& s : *table_)
    for (uint32_t nr : s.numbers) exits_->release(nr);
}

std::shared_ptr<const SyscallSubscriptions::Table> SyscallSubscriptions::snapshot() const {
  std::lock_guard lock(mu_);
  return table_;
}

void SyscallSubscriptions::replace(std::shared_ptr<const Table> next) {
  table_ = std::move(next);
  size_.store(table_->size(), std::memory_order_release);
}

Expected<uint64_t> SyscallSubscriptions::add_syscalls(const std::string& owner, std::span<const uint32_t> numbers,
                                                      SyscallHandler handler) {
  if (!handler) return fail("syscall handler is empty");
  if (numbers.empty()) return fail("no syscall numbers given");
  if (!exits_) return fail("syscall exiting is not available in this gears-vmm");
  Subscription s;
  s.owner = owner;
  for (uint32_t nr : numbers) {
    if (nr >= exits_->count())
      return fail("syscall " + std::to_string(nr) + " is outside the selectable range (< " +
                  std::to_string(exits_->count()) + ")");
    if (std::find(s.numbers.begin(), s.numbers.end(), nr) == s.numbers.end()) s.numbers.push_back(nr);
  }
  for (size_t i = 0; i < s.numbers.size(); ++i) {
    if (auto a = exits_->acquire(s.numbers[i]); !a) {
      for (size_t j = 0; j < i; ++j) exits_->release(s.numbers[j]);
      return fail(a.error());
    }
  }
  s.on_syscall = std::make_shared<const SyscallHandler>(std::move(handler));
  return insert(std::move(s));
}

Expected<uint64_t> SyscallSubscriptions::add_process(const std::string& owner, ProcessHandler handler) {
  if (!handler) return fail("process handler is empty");
  if (!process_events_.load())
    return fail("process events need process tracking (start gears-vmm with --track-processes)");
  Subscription s;
  s.owner = owner;
  s.on_process = std::make_shared<const ProcessHandler>(std::move(handler));
  return insert(std::move(s));
}

uint64_t SyscallSubscriptions::insert(Subscription s) {
  std::lock_guard lock(mu_);
  s.id = next_id_++;
  const uint64_t id = s.id;
  auto next = std::make_shared<Table>(*table_);
  next->push_back(std::move(s));
  replace(std::move(next));
  return id;
}

void SyscallSubscriptions::remove(uint64_t id) {
  remove_where([id](const Subscription& s) { return s.id == id; });
}

void SyscallSubscriptions::remove_owner(const std::string& owner) {
  remove_where([&owner](const Subscription& s) { return s.owner == owner; });
}

void SyscallSubscriptions::remove_where(const std::function<bool(const Subscription&)>& gone) {
  std::vector<uint32_t> release;
  {
    std::lock_guard lock(mu_);
    auto next = std::make_shared<Table>();
    for (const auto& s : *table_) {
      if (gone(s)) release.insert(release.end(), s.numbers.begin(), s.numbers.end());
      else next->push_back(s);
    }
    replace(std::move(next));
  }
  // A vCPU may still run a removed handler from its snapshot: the snapshot keeps it alive.
  if (exits_)
    for (uint32_t nr : release) exits_->release(nr);
}

size_t SyscallSubscriptions::count(const std::string& owner) const {
  auto t = snapshot();
  return static_cast<size_t>(std::count_if(t->begin(), t->end(), [&](const Subscription& s) { return s.owner == owner; }));
}

void SyscallSubscriptions::on_syscall(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs) {
  if (size_.load(std::memory_order_acquire) == 0) return;
  auto table = snapshot();
  std::optional<hypercall::VcpuGuestContext> ctx;
  SyscallEvent event;
  for (const auto& s : *table) {
    if (!s.on_syscall || std::find(s.numbers.begin(), s.numbers.end(), ev.nr) == s.numbers.end()) continue;
    if (!ctx) {
      // The caller is a user process: its memory, with its privilege.
      ctx.emplace(mem, regs, static_cast<int>(ev.vcpu), Origin::guest_user);
      event.nr = ev.nr;
      std::copy(ev.args.begin(), ev.args.end(), event.args);
    }
    try {
      (*s.on_syscall)(*ctx, event);
      delivered_.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
      errors_.fetch_add(1, std::memory_order_relaxed);  // must not unwind through the vCPU loop
    }
  }
}

void SyscallSubscriptions::on_process(GuestMemory& mem, uint32_t vcpu, VcpuRegs& regs, const ProcessEvent& event) {
  if (size_.load(std::memory_order_acquire) == 0) return;
  auto table = snapshot();
  std::optional<hypercall::VcpuGuestContext> ctx;
  for (const auto& s : *table) {
    if (!s.on_process) continue;
    if (!ctx) ctx.emplace(mem, regs, static_cast<int>(vcpu), Origin::guest_user);
    try {
      (*s.on_process)(*ctx, event);
      delivered_.fetch_add(1, std::memory_order_relaxed);
    } catch (...) {
      errors_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

std::optional<ProcessEvent> process_event_of(const syscall_exit::SyscallEvent& ev, const std::string& exec_filename,
                                             int64_t pid) {
  ProcessEvent out;
  out.pid = pid > 0 && pid <= INT32_MAX ? static_cast<int>(pid) : -1;
  if (ev.nr == sys::kExecve || ev.nr == sys::kExecveat) {
    out.kind = ProcessEvent::Kind::exec;
    const auto slash = exec_filename.rfind('/');
    out.comm = slash == std::string::npos ? exec_filename : exec_filename.substr(slash + 1);
    if (out.comm.size() > 15) out.comm.resize(15);  // TASK_COMM_LEN - 1
    return out;
  }
  if (ev.nr == sys::kExitGroup) {
    out.kind = ProcessEvent::Kind::exit;
    return out;
  }
  return std::nullopt;
}

}  // namespace gears::vmm::deploy
