#include "hooks/syscall_hook.h"

#include <time.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <future>
#include <cstring>
#include <sstream>

#include "gears/abi/hypercall.h"
#include "hooks/vcpu_xstate.h"
#include "tools/introspect/kvm_regs.h"
#include "tools/introspect/page_walk.h"
#include "tools/syscall_exit/stub_placement.h"

namespace gears::vmm::hooks {

using introspect::hex;

namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec);
}

bool has_word(const std::string& cmdline, const std::string& word) {
  std::istringstream in(cmdline);
  std::string w;
  while (in >> w)
    if (w == word) return true;
  return false;
}

// Where the `sysretq` lives in the stub page (the stub itself is ~112 bytes at offset 0).
constexpr uint64_t kSysretOffset = 0xF00;
// SYSRET with a non-canonical RCX faults in ring 0 on Intel: such calls are not finished here.
constexpr uint64_t kUserTop = 0x0000'8000'0000'0000ULL;

// Without KASLR (KERNEL_IMAGE_SIZE 512 MiB) modules start at 0xffffffffa0000000, with it at
// 0xffffffffc0000000; an entry above the first is only possible in the second layout. The
// stub's slot must stay out of the module area in either.
syscall_exit::PlacementLimits limits_for(uint64_t entry) {
  syscall_exit::PlacementLimits l;
  if (entry >= 0xffff'ffff'a000'0000ULL) l.highest = 0xffff'ffff'c000'0000ULL;
  return l;
}

}  // namespace

bool guest_pti_likely(const std::string& cmdline, bool cpu_is_amd) {
  if (has_word(cmdline, "pti=off") || has_word(cmdline, "nopti") || has_word(cmdline, "mitigations=off")) return false;
  if (has_word(cmdline, "pti=on")) return true;
  return !cpu_is_amd;
}

SyscallHook::SyscallHook(Vm& vm, syscall_exit::SyscallExitTool& tool, hypercall::HypercallDispatcher& hc,
                         SyscallHookConfig cfg, size_t vcpus)
    : vm_(vm),
      tool_(tool),
      hypercalls_(hc),
      cfg_(std::move(cfg)),
      guest_lstar_(new std::atomic<uint64_t>[vcpus]),
      hooked_(new std::atomic<bool>[vcpus]),
      nvcpus_(vcpus) {
  for (size_t i = 0; i < vcpus; ++i) {
    guest_lstar_[i].store(0);
    hooked_[i].store(false);
  }
}

Expected<std::unique_ptr<SyscallHook>> SyscallHook::install(Vm& vm, std::vector<std::unique_ptr<Vcpu>>& vcpus,
                                                            syscall_exit::SyscallExitTool& tool,
                                                            hypercall::HypercallDispatcher& hypercalls,
                                                            SyscallHookConfig config) {
  if (vm.kvm().check_extension(KVM_CAP_SYNC_REGS) <= 0 ||
      !(vm.kvm().check_extension(KVM_CAP_SYNC_REGS) & KVM_SYNC_X86_SREGS))
    return fail("KVM lacks KVM_CAP_SYNC_REGS with sregs: the GEARS hooks need it");
  std::unique_ptr<SyscallHook> h(new SyscallHook(vm, tool, hypercalls, std::move(config), vcpus.size()));
  SyscallHook* self = h.get();
  self->vcpus_ = &vcpus;
  // Registers on every exit, control registers included (CR3 names the process).
  for (auto& v : vcpus) v->run().kvm_valid_regs |= KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS;
  self->armed_.store(self->cfg_.armed_at_boot);
  if (int n = vm.kvm().check_extension(KVM_CAP_XSAVE2); n > 0) self->xsave2_size_ = static_cast<size_t>(n);

  if (self->cfg_.syscall_exit) {
    if (guest_pti_likely(self->cfg_.guest_cmdline, self->cfg_.cpu_is_amd)) {
      self->status_ = "off: the guest kernel will run with PTI (Intel CPU); boot it with pti=off";
      self->log("syscall exiting is OFF: the guest kernel will likely enable page-table isolation (PTI), whose "
                "user page tables do not map the stub; add pti=off to --cmdline to use it");
      self->cfg_.syscall_exit = false;
    }
  }
  if (self->cfg_.syscall_exit) {
    GEARS_TRY(vm.set_msr_filter({{kMsrLstar, 1, true, true}},
                                MsrHandler{[self](Vcpu& v, uint32_t, uint64_t& value) { return self->on_lstar_read(v, value); },
                                           [self](Vcpu& v, uint32_t, uint64_t value) { return self->on_lstar_write(v, value); }}));
    vm.add_pio_observer({syscall_exit::kDefaultExitPort,
                         [self](Vcpu& v, kvm_run& run) { return self->on_stub_port(v, run); }});
    if (!self->cfg_.returns) {
      // off unless asked (--syscall-returns / --returns)
    } else if (vm.kvm().check_extension(KVM_CAP_SET_GUEST_DEBUG) > 0) {
      self->returns_ = std::make_unique<ReturnTrap>(tool);
      ReturnTrap* rt = self->returns_.get();
      for (auto& v : vcpus) GEARS_TRY(rt->enable(*v));  // before the vCPUs run: on this thread
      vm.set_debug_handler([rt](Vcpu& v, kvm_run& run) { return rt->on_debug(v, run, now_ns()); });
    } else {
      self->log("KVM lacks KVM_CAP_SET_GUEST_DEBUG: no syscall return events");
    }
  } else if (self->status_.starts_with("waiting")) {
    self->status_ = "off (--no-syscall-exit)";
  }
  vm.add_pio_observer({GEARS_DOORBELL_PORT, [self](Vcpu& v, kvm_run& run) { return self->on_doorbell(v, run); }});
  return h;
}

void SyscallHook::log(const std::string& line) { std::fprintf(stderr, "gears-vmm: %s\n", line.c_str()); }

Expected<uint64_t> SyscallHook::ensure_stub(Vcpu& v, uint64_t entry) {
  std::lock_guard lock(mu_);
  if (uint64_t s = stub_gva_.load()) {
    if (entry == original_entry_) return s;
    return fail("vCPU " + std::to_string(v.id()) + " wrote LSTAR " + hex(entry) + ", not the entry " +
                hex(original_entry_) + " the stub jumps to: syscall exiting is off on that vCPU");
  }
  if (!status_.starts_with("waiting")) return fail(status_);  // an earlier attempt failed: keep it off
  auto fail_off = [&](const std::string& why) -> Expected<uint64_t> {
    status_ = "off: " + why;
    return fail(why);
  };
  auto sregs = v.sregs();
  if (!sregs) return fail_off(sregs.error().what());
  GuestMemory& mem = vm_.memory();
  auto slot = syscall_exit::find_stub_slot(mem, sregs->cr3, entry, limits_for(entry));
  if (!slot) return fail_off(slot.error().what());
  syscall_exit::StubParams p;
  p.stub_gva = slot->stub_gva;
  p.original_entry = entry;
  p.count = tool_.count();
  p.hypercall_nr = GEARS_SYSCALL_NR;
  p.allow_indirect = false;  // a direct jmp: no steerable indirect branch before the kernel's mitigations
  auto stub = syscall_exit::generate_stub(p);
  if (!stub) return fail_off(stub.error().what());
  if (stub->bytes.size() > kSysretOffset) return fail_off("the syscall stub overlaps its sysretq slot");
  if (auto w = mem.write(cfg_.stub_gpa, stub->bytes); !w) return fail_off(w.error().what());
  // The user-hypercall return path: `sysretq` (REX.W 0F 07) at a fixed offset of the stub page.
  const uint8_t sysretq[] = {0x48, 0x0F, 0x07, 0xCC};
  if (auto w = mem.write(cfg_.stub_gpa + kSysretOffset, sysretq); !w) return fail_off(w.error().what());
  if (auto m = syscall_exit::map_stub(mem, *slot, cfg_.stub_pt_gpa, cfg_.stub_gpa); !m) return fail_off(m.error().what());
  auto bits = mem.span(cfg_.stub_gpa + stub->bitmap_offset, stub->bitmap_bytes);
  if (!bits) return fail_off(bits.error().what());
  if (auto a = tool_.attach(*bits); !a) return fail_off(a.error().what());
  stub_ = std::move(*stub);
  original_entry_ = entry;
  exit_offset_ = stub_.exit_offset;
  resume_offset_ = stub_.resume_offset;
  stub_gva_.store(slot->stub_gva);
  status_ = "on";
  log("syscall exiting: stub at " + hex(slot->stub_gva) + " (page " + hex(cfg_.stub_gpa) + "), guest entry " +
      hex(entry) + ", " + std::to_string(stub_.bytes.size()) + " bytes");
  return slot->stub_gva;
}

bool SyscallHook::on_lstar_write(Vcpu& v, uint64_t value) {
  const auto id = static_cast<size_t>(v.id());
  if (id < nvcpus_) guest_lstar_[id].store(value);
  uint64_t target = value;
  bool hooked = false;
  // Disarmed, the guest is left exactly as it is (not even the stub page is mapped):
  // set_armed(true) maps it later, at run time.
  if (!armed_.load()) {
    // LSTAR as the guest asked
  } else if (auto s = ensure_stub(v, value)) {
    target = *s;
    hooked = true;
  } else {
    log("syscall exiting unavailable on vCPU " + std::to_string(v.id()) + ": " + s.error().what());
  }
  // KVM does not write a filtered MSR itself: set it (host writes are not filtered). We are on
  // the vCPU's own thread, between two KVM_RUNs.
  if (auto r = v.set_msr(kMsrLstar, target); !r) {
    log("vCPU " + std::to_string(v.id()) + ": " + r.error().what());
    if (hooked) (void)v.set_msr(kMsrLstar, value);
    hooked = false;
  }
  if (id < nvcpus_) hooked_[id].store(hooked);
  return true;
}

bool SyscallHook::on_lstar_read(Vcpu& v, uint64_t& value) {
  const auto id = static_cast<size_t>(v.id());
  if (id < nvcpus_ && guest_lstar_[id].load() != 0) {
    value = guest_lstar_[id].load();  // the hook is invisible: the guest reads what it wrote
    return true;
  }
  auto r = v.get_msr(kMsrLstar);
  if (!r) return false;
  value = *r;
  return true;
}

bool SyscallHook::on_stub_port(Vcpu& v, kvm_run& run) {
  const uint64_t stub = stub_gva_.load();
  kvm_regs& r = run.s.regs.regs;
  const kvm_sregs& s = run.s.regs.sregs;
  // Only the stub's own `out` (CPL 0, at the stub) counts; anything else on this port goes to
  // the bus as before. KVM reports RIP at the `out` (completed on re-entry); accept either.
  if (stub == 0 || run.io.direction != KVM_EXIT_IO_OUT || s.cs.dpl != 0 ||
      (r.rip != stub + exit_offset_ && r.rip != stub + resume_offset_)) {
    foreign_port_exits_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  if (engine_ && engine_->busy() && engine_exit(v, run)) return true;
  if (static_cast<uint32_t>(r.rax) == GEARS_SYSCALL_NR) {
    user_hypercall(v, run);
    return true;
  }
  stub_exits_.fetch_add(1, std::memory_order_relaxed);
  VcpuRegs regs = vcpu_regs_from_kvm(r, s);
  const VcpuRegs at_entry = regs;
  const uint64_t now = now_ns();
  tool_.on_stub_exit(static_cast<uint32_t>(v.id()), regs, now);
  // After the listeners: TF in the saved user RFLAGS makes the return trap (ReturnTrap).
  const bool trap_return = returns_ && returns_->on_entry(v, at_entry, now);
  kvm_regs after = r;
  apply_vcpu_regs(regs, after);
  if (trap_return) after.r11 |= ReturnTrap::kRflagsTf;
  after.rip = r.rip;  // the stub must resume where it stopped, whatever a listener did
  if (std::memcmp(&after, &r, sizeof r) != 0) {
    r = after;
    run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
  }
  return true;
}

bool SyscallHook::engine_exit(Vcpu& v, kvm_run& run) {
  kvm_regs& r = run.s.regs.regs;
  VcpuRegs regs = vcpu_regs_from_kvm(r, run.s.regs.sregs);
  VcpuXstate xs(v, xsave2_size_);
  const auto entry = engine_->on_entry(static_cast<uint32_t>(v.id()), regs, vm_.memory(), xs);
  if (entry != inject::BorrowEngine::Entry::not_mine) {
    engine_exits_.fetch_add(1, std::memory_order_relaxed);
    kvm_regs after = r;
    apply_vcpu_regs(regs, after);
    after.rip = r.rip;  // the stub resumes at its jmp to the kernel: the call runs as set
    r = after;
    run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
    // A borrow that just ended leaves the thread at its own syscall: processed as usual below.
    if (entry == inject::BorrowEngine::Entry::owned) return true;
  }
  // Stopped only by the exit-all flag: numbers nobody selected go straight on.
  const auto nr = static_cast<uint32_t>(r.rax);
  const bool always = nr == GEARS_SYSCALL_NR || (nr >= tool_.count() && (nr & 0x4000'0000u));
  if (always || (nr < tool_.count() && tool_.selected(nr))) return false;
  passed_through_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void SyscallHook::set_exit_all(bool on) {
  std::lock_guard lock(mu_);
  if (!stub_gva_.load() || !stub_.flag_offset) return;
  const uint8_t v = on ? 1 : 0;
  (void)vm_.memory().write(cfg_.stub_gpa + stub_.flag_offset, std::span<const uint8_t>(&v, 1));
}

void SyscallHook::user_hypercall(Vcpu& v, kvm_run& run) {
  user_hypercalls_.fetch_add(1, std::memory_order_relaxed);
  kvm_regs& r = run.s.regs.regs;
  kvm_sregs& s = run.s.regs.sregs;
  VcpuRegs regs = vcpu_regs_from_kvm(r, s);
  regs.cpl = 3;  // the caller's privilege: SYSCALL came from user mode (guest memory is read as user)
  auto res = hypercalls_.dispatch(Origin::guest_user, v.id(), regs, vm_.memory());
  if (!res.finish_as_sysret) return;
  // Finish as SYSRET would, so the guest kernel never sees the call.
  if (regs.rcx >= kUserTop) {
    // A non-canonical/kernel return address: let the kernel's own path deal with it (-ENOSYS).
    refused_sysret_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Resume at the `sysretq` in the stub page: the CPU itself returns to user mode with
  // RIP = RCX, RFLAGS = R11 and the user CS/SS from MSR_STAR, as the kernel's own SYSRET would.
  // (Writing CS/SS through sync sregs instead also rewrites TR, whose busy type KVM reports
  // for SVM: QEMU/TCG's I/O-permission check then refuses every ioperm()ed port with #GP.)
  kvm_regs out = r;
  apply_vcpu_regs(regs, out);
  out.rip = stub_gva_.load() + kSysretOffset;
  r = out;
  run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
}

bool SyscallHook::on_doorbell(Vcpu& v, kvm_run& run) {
  if (run.io.direction != KVM_EXIT_IO_OUT) return false;
  kvm_regs& r = run.s.regs.regs;
  const kvm_sregs& s = run.s.regs.sregs;
  if (s.cs.dpl != 0) {
    // Only the guest kernel rings the doorbell (a process given ioperm() is not the kernel).
    r.rax = static_cast<uint64_t>(-static_cast<int64_t>(EPERM));
    run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
    return true;
  }
  kernel_hypercalls_.fetch_add(1, std::memory_order_relaxed);
  VcpuRegs regs = vcpu_regs_from_kvm(r, s);
  hypercalls_.dispatch(Origin::guest_kernel, v.id(), regs, vm_.memory());
  kvm_regs out = r;
  apply_vcpu_regs(regs, out);
  out.rip = r.rip;  // KVM skips the `out` on re-entry only if RIP is unchanged
  r = out;
  run.kvm_dirty_regs |= KVM_SYNC_X86_REGS;
  return true;
}

Expected<control::Json> SyscallHook::set_armed(bool on) {
  if (!cfg_.syscall_exit) {
    std::lock_guard lock(mu_);
    return fail("the syscall stub is not installed (" + status_ + ")");
  }
  if (on && stub_gva_.load() == 0) {
    // First arming at run time: map the stub now, through the first vCPU that has set up
    // SYSCALL (the kernel half of every address space shares the page tables it writes).
    for (auto& v : *vcpus_) {
      const auto id = static_cast<size_t>(v->id());
      const uint64_t guest = id < nvcpus_ ? guest_lstar_[id].load() : 0;
      if (guest == 0) continue;
      auto result = std::make_shared<Expected<uint64_t>>(fail("not run"));
      auto fut = v->run_on_thread([this, guest, result](Vcpu& self) { *result = ensure_stub(self, guest); });
      if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
        return fail("vCPU " + std::to_string(id) + " did not answer within 5 s (is the guest stopping?)");
      if (!*result) return fail("cannot install the syscall stub: " + result->error().what());
      break;
    }
    if (stub_gva_.load() == 0) return fail("the guest has not set up SYSCALL yet (still booting?)");
  }
  const uint64_t stub = stub_gva_.load();
  armed_.store(on);
  control::Json out = control::Json::array();
  for (auto& v : *vcpus_) {
    const auto id = static_cast<size_t>(v->id());
    if (id >= nvcpus_) continue;
    const uint64_t guest = guest_lstar_[id].load();
    bool want = on && guest == original_entry_;
    if (guest == 0) {  // this vCPU has not set up SYSCALL yet: its own write will follow armed_
      out.push_back({{"vcpu", id}, {"hooked", false}});
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    auto fut = v->run_on_thread([this, id, guest, stub, want, done](Vcpu& self) {
      if (self.set_msr(kMsrLstar, want ? stub : guest)) {
        hooked_[id].store(want);
        done->store(true);
      }
    });
    if (fut.wait_for(std::chrono::seconds(5)) != std::future_status::ready)
      return fail("vCPU " + std::to_string(id) + " did not answer within 5 s (is the guest stopping?)");
    if (!done->load()) return fail("KVM_SET_MSRS(LSTAR) failed on vCPU " + std::to_string(id));
    out.push_back({{"vcpu", id}, {"hooked", want}});
  }
  {
    std::lock_guard lock(mu_);
    status_ = on ? "on" : "disarmed";
  }
  return control::Json{{"armed", on}, {"vcpus", std::move(out)}};
}

control::Json SyscallHook::stats() const {
  control::Json vcpus = control::Json::array();
  for (size_t i = 0; i < nvcpus_; ++i)
    vcpus.push_back({{"vcpu", i}, {"guest_lstar", hex(guest_lstar_[i].load())}, {"hooked", hooked_[i].load()}});
  std::lock_guard lock(mu_);
  return {{"status", status_},
          {"stub_gva", hex(stub_gva_.load())},
          {"guest_entry", hex(original_entry_)},
          {"stub_exits", stub_exits_.load()},
          {"user_hypercalls", user_hypercalls_.load()},
          {"kernel_hypercalls", kernel_hypercalls_.load()},
          {"sysret_refused", refused_sysret_.load()},
          {"foreign_port_exits", foreign_port_exits_.load()},
          {"engine_exits", engine_exits_.load()},
          {"exit_all_passed", passed_through_.load()},
          {"vcpus", std::move(vcpus)}};
}

}  // namespace gears::vmm::hooks
