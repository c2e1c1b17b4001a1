#include "tools/syscall_exit/syscall_exit_tool.h"

#include <algorithm>
#include <cstring>

namespace gears::vmm::syscall_exit {

using control::Json;

SyscallExitTool::SyscallExitTool(uint32_t count)
    : count_(count),
      own_bits_((count + 7) / 8, 0),
      bits_(own_bits_),
      user_(count, false),
      refs_(count, 0),
      exits_(new std::atomic<uint64_t>[count]),
      ret_user_(count, false),
      ret_refs_(count, 0),
      ret_on_(new std::atomic<bool>[count]),
      ret_exits_(new std::atomic<uint64_t>[count]) {
  for (uint32_t i = 0; i < count; ++i) {
    exits_[i].store(0, std::memory_order_relaxed);
    ret_on_[i].store(false, std::memory_order_relaxed);
    ret_exits_[i].store(0, std::memory_order_relaxed);
  }
}

void SyscallExitTool::update_returns(uint32_t nr) {
  ret_on_[nr].store(ret_user_[nr] || ret_refs_[nr] > 0, std::memory_order_relaxed);
}

Expected<void> SyscallExitTool::set_user_returns(uint32_t nr, bool on) {
  if (nr >= count_) return fail("syscall number " + std::to_string(nr) + " is outside the stub's table");
  std::lock_guard lock(mu_);
  ret_user_[nr] = on;
  update_returns(nr);
  return {};
}

Expected<void> SyscallExitTool::acquire_returns(uint32_t nr) {
  if (nr >= count_) return fail("syscall number " + std::to_string(nr) + " is outside the stub's table");
  std::lock_guard lock(mu_);
  if (ret_refs_[nr] == UINT16_MAX) return fail("too many holders of syscall " + std::to_string(nr) + "'s return");
  ++ret_refs_[nr];
  update_returns(nr);
  return {};
}

void SyscallExitTool::release_returns(uint32_t nr) {
  if (nr >= count_) return;
  std::lock_guard lock(mu_);
  if (ret_refs_[nr] > 0) --ret_refs_[nr];
  update_returns(nr);
}

void SyscallExitTool::subscribe_returns(ReturnListener listener) { ret_listeners_.push_back(std::move(listener)); }

void SyscallExitTool::on_return(const SyscallReturn& ret) {
  ret_total_.fetch_add(1, std::memory_order_relaxed);
  if (ret.nr < count_) ret_exits_[ret.nr].fetch_add(1, std::memory_order_relaxed);
  for (const auto& l : ret_listeners_) l(ret);
}

uint64_t SyscallExitTool::return_exits(uint32_t nr) const {
  return nr < count_ ? ret_exits_[nr].load(std::memory_order_relaxed) : 0;
}

Expected<void> SyscallExitTool::attach(std::span<uint8_t> guest_bitmap) {
  std::lock_guard lock(mu_);
  if (guest_bitmap.size() < own_bits_.size())
    return fail("stub bitmap of " + std::to_string(guest_bitmap.size()) + " bytes is smaller than the " +
                std::to_string(own_bits_.size()) + " the table needs");
  std::memcpy(guest_bitmap.data(), own_bits_.data(), own_bits_.size());
  bits_ = guest_bitmap.first(own_bits_.size());
  attached_ = true;
  return {};
}

bool SyscallExitTool::attached() const {
  std::lock_guard lock(mu_);
  return attached_;
}

void SyscallExitTool::update_bit(uint32_t nr) {
  SyscallBitmap(bits_, count_).set(nr, user_[nr] || refs_[nr] > 0).value();
}

Expected<void> SyscallExitTool::set_user(uint32_t nr, bool on) {
  if (nr >= count_)
    return fail("syscall number " + std::to_string(nr) + " is outside the stub's table (0.." +
                std::to_string(count_ - 1) + ")");
  std::lock_guard lock(mu_);
  user_[nr] = on;
  update_bit(nr);
  return {};
}

void SyscallExitTool::set_user_all(bool on) {
  std::lock_guard lock(mu_);
  for (uint32_t nr = 0; nr < count_; ++nr) {
    user_[nr] = on;
    update_bit(nr);
  }
}

Expected<void> SyscallExitTool::acquire(uint32_t nr) {
  if (nr >= count_) return fail("syscall number " + std::to_string(nr) + " is outside the stub's table");
  std::lock_guard lock(mu_);
  if (refs_[nr] == UINT16_MAX) return fail("too many holders of syscall " + std::to_string(nr));
  ++refs_[nr];
  update_bit(nr);
  return {};
}

void SyscallExitTool::release(uint32_t nr) {
  if (nr >= count_) return;
  std::lock_guard lock(mu_);
  if (refs_[nr] > 0) --refs_[nr];
  update_bit(nr);
}

bool SyscallExitTool::selected(uint32_t nr) const {
  std::lock_guard lock(mu_);
  return SyscallBitmap(bits_, count_).test(nr);
}

void SyscallExitTool::subscribe(Listener listener) { listeners_.push_back(std::move(listener)); }

void SyscallExitTool::on_stub_exit(uint32_t vcpu, VcpuRegs& regs, uint64_t time_ns) {
  SyscallEvent ev;
  ev.vcpu = vcpu;
  ev.cr3 = regs.cr3;
  ev.nr = static_cast<uint32_t>(regs.rax);
  ev.args = regs.syscall_args();
  ev.user_rip = regs.rcx;
  ev.time_ns = time_ns;
  total_.fetch_add(1, std::memory_order_relaxed);
  if (ev.nr < count_) exits_[ev.nr].fetch_add(1, std::memory_order_relaxed);
  else other_.fetch_add(1, std::memory_order_relaxed);
  for (const auto& l : listeners_) l(ev, regs);
}

uint64_t SyscallExitTool::exits(uint32_t nr) const {
  return nr < count_ ? exits_[nr].load(std::memory_order_relaxed) : 0;
}

Expected<void> SyscallExitTool::register_commands(control::CommandRegistry& registry) {
  GEARS_TRY(registry.add("syscalls", "selective syscall exiting: intercepted numbers and exit counts",
                         [this](const Json&) -> Expected<Json> {
                           Json list = Json::array();
                           std::lock_guard lock(mu_);
                           SyscallBitmap bm(bits_, count_);
                           for (uint32_t nr = 0; nr < count_; ++nr) {
                             uint64_t n = exits_[nr].load(std::memory_order_relaxed);
                             bool on = bm.test(nr);
                             const bool ret = ret_on_[nr].load(std::memory_order_relaxed);
                             if (!on && n == 0 && !ret) continue;
                             list.push_back({{"nr", nr}, {"intercept", on}, {"user", static_cast<bool>(user_[nr])},
                                             {"tools", refs_[nr]}, {"exits", n}, {"returns", ret},
                                             {"return_exits", ret_exits_[nr].load(std::memory_order_relaxed)}});
                           }
                           return Json{{"installed", attached_},
                                       {"count", count_},
                                       {"exits_total", total_.load()},
                                       {"exits_other", other_.load()},
                                       {"returns_total", ret_total_.load()},
                                       {"syscalls", std::move(list)}};
                         }));
  GEARS_TRY(registry.add("intercept",
                         "start/stop exiting on a syscall: \"nr\":N|\"all\", \"on\":bool[, \"returns\":bool: its return too]",
                         [this](const Json& req) -> Expected<Json> {
                           const bool on = req.at("on").get<bool>();
                           const Json& nr = req.at("nr");
                           // "returns" follows "on" unless given: `intercept N off` also stops returns.
                           const bool returns = req.contains("returns") ? req.at("returns").get<bool>() && on : false;
                           const bool set_returns = req.contains("returns") || !on;
                           if (nr.is_string() && nr.get<std::string>() == "all") {
                             set_user_all(on);
                             if (set_returns)
                               for (uint32_t i = 0; i < count_; ++i) (void)set_user_returns(i, returns);
                             return Json{{"nr", "all"}, {"on", on}};
                           }
                           if (!nr.is_number_integer() || nr.get<int64_t>() < 0)
                             return fail("\"nr\" must be a non-negative integer or \"all\"");
                           const auto n = nr.get<uint64_t>();
                           if (n >= count_)
                             return fail("syscall number " + std::to_string(n) + " is outside the stub's table (0.." +
                                         std::to_string(count_ - 1) + ")");
                           if (auto r = set_user(static_cast<uint32_t>(n), on); !r) return fail(r.error());
                           if (set_returns)
                             if (auto r = set_user_returns(static_cast<uint32_t>(n), returns); !r) return fail(r.error());
                           Json out{{"nr", n}, {"on", on}, {"intercept", selected(static_cast<uint32_t>(n))}};
                           if (req.contains("returns") || wants_return(static_cast<uint32_t>(n)))
                             out["returns"] = wants_return(static_cast<uint32_t>(n));
                           return out;
                         }));
  GEARS_TRY(registry.add_stats("syscall_exit", [this] {
    uint64_t sel = 0;
    {
      std::lock_guard lock(mu_);
      sel = SyscallBitmap(bits_, count_).selected().size();
    }
    return Json{{"exits_total", total_.load()}, {"exits_other", other_.load()}, {"selected", sel},
                {"returns_total", ret_total_.load()}};
  }));
  return {};
}

}  // namespace gears::vmm::syscall_exit
