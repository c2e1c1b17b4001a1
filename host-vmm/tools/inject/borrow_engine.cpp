#include "tools/inject/borrow_engine.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gears::vmm::inject {

namespace {

// Trampoline page layout (offsets from the scratch area's start).
constexpr uint64_t kCallEntry = 0;      // call [fn] with RCX = [arg3], then report RAX
constexpr uint64_t kSyscallReturn = 32; // a syscall step returns here; a restarted call
                                        // (regs->ip -= 2) finds its SYSCALL at 30
constexpr uint64_t kFnSlot = 64, kArg3Slot = 72;
constexpr uint64_t kReportEnd = 64;     // RCX of a report lies below this offset

constexpr uint64_t kUserTop = 0x0000'8000'0000'0000ULL;
constexpr uint64_t kUserRflags = 0x202;  // IF and the always-one bit; DF clear as the ABI wants
constexpr uint64_t kProtRwx = 7, kMapPrivateAnonPopulate = 0x02 | 0x20 | 0x8000;

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) { std::memcpy(&b[at], &v, 4); }
void put64(std::vector<uint8_t>& b, size_t at, uint64_t v) { std::memcpy(&b[at], &v, 8); }

// mov rsi, rax ; mov edi, kInjectDoneHc ; mov eax, GEARS_SYSCALL_NR ; syscall ; ud2
void put_report(std::vector<uint8_t>& b, size_t at) {
  const uint8_t code[] = {0x48, 0x89, 0xC6, 0xBF, 0, 0, 0, 0, 0xB8, 0, 0, 0, 0, 0x0F, 0x05, 0x0F, 0x0B};
  std::memcpy(&b[at], code, sizeof code);
  put32(b, at + 4, static_cast<uint32_t>(kInjectDoneHc));
  put32(b, at + 9, GEARS_SYSCALL_NR);
}

uint64_t page_up(uint64_t v) { return (v + 4095) & ~uint64_t{4095}; }

}  // namespace

std::vector<uint8_t> trampoline_code(uint64_t fn, uint64_t arg3) {
  std::vector<uint8_t> b(80, 0xCC);
  // mov rcx, [rip + (kArg3Slot - 7)] ; call [rip + (kFnSlot - 13)]
  const uint8_t head[] = {0x48, 0x8B, 0x0D, 0, 0, 0, 0, 0xFF, 0x15, 0, 0, 0, 0};
  std::memcpy(&b[kCallEntry], head, sizeof head);
  put32(b, kCallEntry + 3, static_cast<uint32_t>(kArg3Slot - (kCallEntry + 7)));
  put32(b, kCallEntry + 9, static_cast<uint32_t>(kFnSlot - (kCallEntry + 13)));
  put_report(b, kCallEntry + 13);
  b[kSyscallReturn - 2] = 0x0F;  // the SYSCALL a restarted call re-executes
  b[kSyscallReturn - 1] = 0x05;
  put_report(b, kSyscallReturn);
  put64(b, kFnSlot, fn);
  put64(b, kArg3Slot, arg3);
  return b;
}

BorrowEngine::BorrowEngine(std::function<void(bool)> set_exit_all) : set_exit_all_(std::move(set_exit_all)) {}

void BorrowEngine::update_busy() {
  busy_.store(!pending_.empty() || !borrows_.empty(), std::memory_order_relaxed);
  // Every syscall must stop at the stub only while a job waits for a thread, or a borrowed
  // thread is about to execute its own SYSCALL again (a continuation known by its registers,
  // whatever number RAX then holds). Trampoline reports use the hypercall number, which always
  // exits: during a call into user code (dlopen and the syscalls it makes) the rest of the
  // guest runs at full speed.
  const bool want = !pending_.empty() || std::any_of(borrows_.begin(), borrows_.end(), [](const Borrow& b) {
    return b.wait == Borrow::Wait::syscall;
  });
  if (want != exit_all_) {
    exit_all_ = want;
    if (set_exit_all_) set_exit_all_(want);
  }
}

void BorrowEngine::submit(std::shared_ptr<Job> job) {
  std::lock_guard lock(mu_);
  pending_.push_back(std::move(job));
  update_busy();
}

void BorrowEngine::cancel(const std::shared_ptr<Job>& job, std::chrono::milliseconds lost_after) {
  std::lock_guard lock(mu_);
  std::erase(pending_, job);
  for (auto& b : borrows_) {
    if (b.job != job) continue;
    b.cancelled = true;
    b.lost_after = lost_after;
  }
  reap_lost();
  update_busy();
}

void BorrowEngine::reap_lost() {
  const auto now = clock::now();
  for (auto it = borrows_.begin(); it != borrows_.end();) {
    if (it->cancelled && now - it->since >= it->lost_after) {
      ++stats_.lost;
      it->job->finished(it->who, fail("the borrowed thread never came back (the process exited mid-injection?)"));
      it = borrows_.erase(it);
    } else {
      ++it;
    }
  }
}

EngineStats BorrowEngine::stats() const {
  std::lock_guard lock(mu_);
  EngineStats s = stats_;
  s.active = borrows_.size();
  s.pending_jobs = pending_.size();
  return s;
}

BorrowEngine::Borrow* BorrowEngine::find(uint64_t cr3, const VcpuRegs& regs) {
  const bool report = static_cast<uint32_t>(regs.rax) == GEARS_SYSCALL_NR && regs.rdi == kInjectDoneHc;
  for (auto& b : borrows_) {
    if (b.who.cr3 != cr3) continue;
    if (b.wait == Borrow::Wait::call) {
      if (report && regs.rcx >= b.scratch && regs.rcx < b.scratch + kReportEnd) return &b;
    } else if (regs.rsp == b.saved.rsp && regs.rcx == b.saved.rcx) {
      return &b;
    }
  }
  return nullptr;
}

BorrowEngine::Entry BorrowEngine::on_entry(uint32_t vcpu, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xstate) {
  if (!busy_.load(std::memory_order_relaxed)) return Entry::not_mine;
  const uint64_t cr3 = root(regs.cr3);
  std::lock_guard lock(mu_);
  if (Borrow* b = find(cr3, regs)) {
    const int64_t answer = static_cast<int64_t>(b->wait == Borrow::Wait::call ? regs.rsi : regs.rax);
    const bool still = advance(*b, answer, regs, mem, xstate);
    if (!still) borrows_.remove_if([b](const Borrow& x) { return &x == b; });
    update_busy();
    return still ? Entry::owned : Entry::given_back;
  }
  if (pending_.empty() && !borrows_.empty()) {
    reap_lost();
    update_busy();
  }
  // A new borrow: only a plain user-mode SYSCALL that returns to user space, and not a gears
  // hypercall (the dispatcher answers those without the kernel).
  if (pending_.empty() || regs.rcx >= kUserTop || regs.rsp >= kUserTop || regs.rcx < 2 ||
      static_cast<uint32_t>(regs.rax) == GEARS_SYSCALL_NR)
    return Entry::not_mine;
  Candidate c{vcpu, cr3, regs.rax, &regs};
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    auto job = *it;
    auto cx = std::make_unique<ChainContext>();
    std::optional<Chain> chain = job->offer(c, *cx);
    if (!chain) continue;
    if (job->satisfied()) pending_.erase(it);
    auto saved_x = xstate.save();
    if (!saved_x) {
      // Without the extended state the thread cannot be given back intact: do not borrow it.
      job->finished(c, fail("cannot save the thread's FPU/SSE state: " + saved_x.error().what()));
      update_busy();
      return Entry::not_mine;
    }
    Borrow& b = borrows_.emplace_back();
    b.job = std::move(job);
    b.who = c;
    b.who.regs = nullptr;
    b.saved = regs;
    b.xsave = std::move(*saved_x);
    b.cx = std::move(cx);
    b.chain = std::move(*chain);
    b.since = clock::now();
    ++stats_.borrows;
    const bool still = advance(b, 0, regs, mem, xstate);
    if (!still) borrows_.pop_back();
    update_busy();
    return still ? Entry::owned : Entry::given_back;
  }
  return Entry::not_mine;
}

void BorrowEngine::as_syscall(Borrow& b, VcpuRegs& regs, uint64_t nr, const std::array<uint64_t, 6>& a) const {
  regs.rax = nr;
  regs.rdi = a[0];
  regs.rsi = a[1];
  regs.rdx = a[2];
  regs.r10 = a[3];
  regs.r8 = a[4];
  regs.r9 = a[5];
  if (b.scratch && b.doing == Borrow::Doing::chain) {
    // Returns into the trampoline page, which reports the result (restartable calls too).
    regs.rcx = b.scratch + kSyscallReturn;
    regs.r11 = kUserRflags;
    regs.rsp = b.scratch + b.scratch_len;
    b.wait = Borrow::Wait::call;
  } else {
    // No trampoline (before mmap, at munmap): the thread executes its own SYSCALL again, with
    // RAX = the result. Only non-restartable calls are issued this way.
    regs.rcx = b.saved.rcx - 2;
    regs.r11 = b.saved.r11;
    regs.rsp = b.saved.rsp;
    b.wait = Borrow::Wait::syscall;
  }
}

void BorrowEngine::restore(Borrow& b, VcpuRegs& regs, ExtendedState& xs) {
  const VcpuRegs& s = b.saved;
  regs.rax = s.rax;  // the thread's own syscall, run now as if never interrupted
  regs.rbx = s.rbx;
  regs.rcx = s.rcx;
  regs.rdx = s.rdx;
  regs.rsi = s.rsi;
  regs.rdi = s.rdi;
  regs.rsp = s.rsp;
  regs.rbp = s.rbp;
  regs.r8 = s.r8;
  regs.r9 = s.r9;
  regs.r10 = s.r10;
  regs.r11 = s.r11;
  regs.r12 = s.r12;
  regs.r13 = s.r13;
  regs.r14 = s.r14;
  regs.r15 = s.r15;
  (void)xs.restore(b.xsave);  // best effort: the general registers are what the ABI promises
  const ChainResult r = b.result ? *b.result : fail("injection chain ended without a result");
  if (r) ++stats_.completed;
  else ++stats_.failed;
  b.job->finished(b.who, r);
}

bool BorrowEngine::advance(Borrow& b, int64_t answer, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xs) {
  introspect::AddressSpace space(mem, b.saved.cr3);
  b.cx->bind(&space);
  switch (b.doing) {
    case Borrow::Doing::unmapping:
      restore(b, regs, xs);
      return false;
    case Borrow::Doing::mapping:
      b.doing = Borrow::Doing::chain;
      if (answer < 0 && answer > -4096) {
        b.scratch_len = 0;
        return issue(b, b.chain.step(answer), regs, mem, xs);
      }
      b.scratch = static_cast<uint64_t>(answer);
      // The trampoline first: every later syscall step returns into it.
      if (!space.write(b.scratch, trampoline_code(0, 0), introspect::Access::user_write())) {
        b.doing = Borrow::Doing::chain;
        b.chain.step(-EFAULT);  // the chain ends on the failure; unmap, then give back
        b.result = fail("cannot write the trampoline into the scratch mapping");
        b.doing = Borrow::Doing::unmapping;
        as_syscall(b, regs, kSysMunmap, {b.scratch, b.scratch_len, 0, 0, 0, 0});
        return true;
      }
      answer = static_cast<int64_t>(b.scratch + kTrampolinePage);
      break;
    case Borrow::Doing::chain:
      break;
  }
  return issue(b, b.chain.step(answer), regs, mem, xs);
}

bool BorrowEngine::issue(Borrow& b, const Request& req, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xs) {
  introspect::AddressSpace space(mem, b.saved.cr3);
  b.cx->bind(&space);
  ++stats_.requests;
  switch (req.kind) {
    case Request::Kind::scratch: {
      const uint64_t want = kTrampolinePage + page_up(req.scratch_len) + ChainContext::kStackBytes;
      if (b.scratch) {
        const bool fits = want <= b.scratch_len;
        return issue(b, b.chain.step(fits ? static_cast<int64_t>(b.scratch + kTrampolinePage) : -ENOSPC), regs, mem, xs);
      }
      b.scratch_len = want;
      b.doing = Borrow::Doing::mapping;
      as_syscall(b, regs, kSysMmap, {0, want, kProtRwx, kMapPrivateAnonPopulate, static_cast<uint64_t>(-1), 0});
      return true;
    }
    case Request::Kind::syscall:
      as_syscall(b, regs, req.nr_or_fn, req.args);
      return true;
    case Request::Kind::call: {
      if (!b.scratch) return issue(b, b.chain.step(-EINVAL), regs, mem, xs);  // needs the trampoline
      const auto code = trampoline_code(req.nr_or_fn, req.args[3]);
      if (!space.write(b.scratch, code, introspect::Access::user_write()))
        return issue(b, b.chain.step(-EFAULT), regs, mem, xs);
      // getpid() returning into the trampoline, on the private stack (16-byte aligned before
      // the trampoline's call, as the ABI wants at a call site).
      regs.rax = kSysGetpid;
      regs.rdi = req.args[0];
      regs.rsi = req.args[1];
      regs.rdx = req.args[2];
      regs.r8 = req.args[4];
      regs.r9 = req.args[5];
      regs.rcx = b.scratch + kCallEntry;
      regs.r11 = kUserRflags;
      regs.rsp = (b.scratch + b.scratch_len) & ~uint64_t{15};
      b.wait = Borrow::Wait::call;
      return true;
    }
    case Request::Kind::none:
      b.result = b.chain.result();
      if (b.scratch) {
        b.doing = Borrow::Doing::unmapping;
        as_syscall(b, regs, kSysMunmap, {b.scratch, b.scratch_len, 0, 0, 0, 0});
        return true;
      }
      restore(b, regs, xs);
      return false;
  }
  return false;
}

}  // namespace gears::vmm::inject
