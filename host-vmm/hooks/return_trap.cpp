#include "hooks/return_trap.h"

#include <cstdio>

#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::hooks {

namespace sys = proctrack::linux_x86_64;

namespace {
constexpr uint32_t kDbVector = 1;
constexpr uint64_t kDr6Bs = 1ULL << 14;   // single step
constexpr uint64_t kDr7Fixed1 = 1ULL << 10;

bool fork_like(uint32_t nr, uint64_t flags) {
  if (nr == sys::kFork || nr == sys::kVfork || nr == sys::kClone3) return true;  // clone3: flags in memory
  return nr == sys::kClone && (!(flags & sys::kCloneVm) || (flags & sys::kCloneVfork));
}

kvm_guest_debug forward_db() {
  kvm_guest_debug dbg{};
  // USE_HW_BP with DR7 = 0 (no breakpoint): KVM forwards every #DB instead of reflecting it.
  dbg.control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP;
  dbg.arch.debugreg[7] = kDr7Fixed1;
  return dbg;
}
}  // namespace

Expected<void> ReturnTrap::enable(Vcpu& v) {
  if (auto r = v.set_guest_debug(forward_db()); !r) {
    on_.store(false);
    return r;
  }
  enabled_vcpus_.fetch_add(1, std::memory_order_relaxed);
  return {};
}

bool ReturnTrap::on_entry(Vcpu& v, const VcpuRegs& regs, uint64_t now_ns) {
  const auto nr = static_cast<uint32_t>(regs.rax);
  if (!on_.load(std::memory_order_relaxed)) return false;
  if (nr == sys::kExitGroup) {  // nothing of this process returns any more
    std::lock_guard lock(mu_);
    table_.drop_cr3(regs.cr3);
    return false;
  }
  if (!tool_.wants_return(nr) || nr == sys::kExit) return false;
  if (regs.r11 & kRflagsTf) {  // the guest single-steps this thread itself (a debugger): leave it
    user_tf_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  syscall_exit::PendingReturn p;
  p.vcpu = static_cast<uint32_t>(v.id());
  p.cr3 = regs.cr3;
  p.rsp = regs.rsp;
  p.rip = regs.rcx;
  p.nr = nr;
  p.args = regs.syscall_args();
  p.time_ns = now_ns;
  p.fork_like = fork_like(nr, regs.rdi);
  std::lock_guard lock(mu_);
  table_.on_entry(p);
  return true;
}

bool ReturnTrap::on_debug(Vcpu& v, kvm_run& run, uint64_t now_ns) {
  debug_exits_.fetch_add(1, std::memory_order_relaxed);
  kvm_regs& r = run.s.regs.regs;
  const kvm_sregs& s = run.s.regs.sregs;
  const bool step = run.debug.arch.exception == kDbVector && (run.debug.arch.dr6 & kDr6Bs) && s.ss.dpl == 3 &&
                    (r.rflags & kRflagsTf);
  if (!step) {
    // Not a user single step with TF. KVM forwards every #DB while USE_HW_BP is set, its own
    // NMI-window single steps on SVM included (which it would have swallowed): re-injecting
    // those into the guest kernel is wrong (a first version did, with KVM_GUESTDBG_INJECT_DB;
    // one test run ended in a guest triple fault, possibly from that).
    // The guest's own #DB sources (icebp; its DR breakpoints are not loaded meanwhile) are lost.
    swallowed_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  syscall_exit::ReturnHit hit;
  {
    std::lock_guard lock(mu_);
    hit = table_.on_step(s.cr3, r.rsp, r.rax, now_ns);
  }
  // TF was ours (we only set it where the thread had none; a user-set TF never reaches here
  // with a pending entry... and an unmatched step is still ours: an entry that expired or was
  // evicted). Clear it so the thread runs on at full speed.
  r.rflags &= ~kRflagsTf;
  run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
  if (hit.kind == syscall_exit::ReturnHit::Kind::kForeign) return true;
  syscall_exit::SyscallReturn ev;
  ev.vcpu = static_cast<uint32_t>(v.id());
  ev.entry_vcpu = hit.entry.vcpu;
  ev.cr3 = s.cr3;
  ev.nr = hit.entry.nr;
  ev.args = hit.entry.args;
  ev.ret = static_cast<int64_t>(r.rax);
  ev.user_rip = hit.entry.rip;
  ev.entry_time_ns = hit.entry.time_ns;
  ev.time_ns = now_ns;
  ev.child = hit.kind == syscall_exit::ReturnHit::Kind::kChildReturn;
  tool_.on_return(ev);
  return true;
}

control::Json ReturnTrap::stats() const {
  syscall_exit::ReturnStats st;
  size_t pending = 0;
  {
    std::lock_guard lock(mu_);
    st = table_.stats();
    pending = table_.pending();
  }
  return {{"status", on_.load() ? "on" : "off"},
          {"mechanism", "single-step (TF in R11)"},
          {"pending", pending},
          {"armed", st.armed},
          {"returns", st.returns},
          {"child_returns", st.child_returns},
          {"missed", st.missed},
          {"child_unseen", st.child_unseen},
          {"expired", st.expired},
          {"abandoned", st.abandoned},
          {"evicted", st.evicted},
          {"foreign_steps", st.foreign},
          {"debug_exits", debug_exits_.load()},
          {"swallowed_db", swallowed_.load()},
          {"user_tf", user_tf_.load()},
          {"vcpus", enabled_vcpus_.load()}};
}

}  // namespace gears::vmm::hooks
