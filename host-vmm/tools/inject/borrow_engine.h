// The borrow engine: runs Chains (chain.h) inside guest threads borrowed at syscall entries.
//
// Mechanism (doc/deploy.md, "Borrowing a thread"). The selective-exit stub stops every thread
// at its syscall entry while a job is pending (the stub's exit-all flag), before the kernel has
// seen the call. The engine may borrow that thread: it saves every general register and the
// extended (FPU/SSE/AVX) state, then turns the call into the chain's requests one by one:
//   syscall  RAX/args replaced, RCX (the return RIP) moved back 2 bytes onto the thread's own
//            SYSCALL instruction: when the call returns, the thread executes SYSCALL again with
//            RAX = the result, the stub stops it again and the engine recognises it by
//            (CR3, RSP, RCX), reads the result and issues the next request;
//   call     the entry becomes getpid() returning into a trampoline in the chain's private
//            RWX scratch mapping, on a private stack: it calls the function and reports RAX
//            with the reserved hypercall kInjectDoneHc;
//   end      the scratch area is unmapped, then every register and the extended state are
//            restored at the next entry and the thread's original syscall runs as if nothing
//            happened. Nothing is written to the thread's stack or to shared pages.
// Pure over registers and guest memory (the KVM glue passes an ExtendedState accessor), so it
// is unit-tested with a simulated thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/guest_memory.h"
#include "gears/abi/hypercall.h"
#include "tools/inject/chain.h"
#include "tools/introspect/vcpu_regs.h"

namespace gears::vmm::inject {

// Reported by the trampoline when a user-mode call returns (RSI = its RAX). Service 0 is
// gears-vmm's own; this index is reserved for the engine and has no dispatcher handler.
inline constexpr uint64_t kInjectDoneHc = GEARS_HC_MAKE(0, 0x7e01);

// x86-64 Linux system call numbers the engine itself issues.
inline constexpr uint64_t kSysMmap = 9, kSysMunmap = 11, kSysGetpid = 39;

// A syscall entry that no borrow owns: what a Job sees when deciding whether to borrow.
struct Candidate {
  uint32_t vcpu = 0;
  uint64_t cr3 = 0;  // address-space root (flag bits masked)
  uint64_t nr = 0;
  const VcpuRegs* regs = nullptr;
};

// Save/restore of one vCPU's extended register state (XSAVE area), on the vCPU's own thread.
class ExtendedState {
 public:
  virtual ~ExtendedState() = default;
  virtual Expected<std::vector<uint8_t>> save() = 0;
  virtual Expected<void> restore(const std::vector<uint8_t>& state) = 0;
};

// A unit of work: which threads to borrow, what to run in each. Its methods run on vCPU
// threads under the engine's lock: keep them short and never block.
class Job {
 public:
  virtual ~Job() = default;
  // A chance to borrow this thread: a chain (bound to `cx`, which lives as long as the borrow)
  // or nothing.
  virtual std::optional<Chain> offer(const Candidate& c, ChainContext& cx) = 0;
  // One borrow ended (the thread is resumed or lost) with the chain's result.
  virtual void finished(const Candidate& c, const ChainResult& r) = 0;
  // No more borrows wanted: the engine drops the job from its pending list.
  virtual bool satisfied() const = 0;
};

struct EngineStats {
  uint64_t borrows = 0, completed = 0, failed = 0, requests = 0, lost = 0;
  uint64_t active = 0, pending_jobs = 0;
};

class BorrowEngine {
 public:
  using clock = std::chrono::steady_clock;
  // `set_exit_all` switches the stub's exit-all flag (every syscall stops at the stub).
  explicit BorrowEngine(std::function<void(bool)> set_exit_all);

  // From the control thread: the job is offered every unowned syscall entry from now on.
  void submit(std::shared_ptr<Job> job);
  // Stops offering the job. Borrows it already made run to their end (a borrowed thread must
  // always be given back its registers), except ones older than `lost_after`, which are
  // presumed dead (the process exited mid-chain) and forgotten.
  void cancel(const std::shared_ptr<Job>& job, std::chrono::milliseconds lost_after = std::chrono::seconds(30));

  // From the KVM glue at every stub exit, on the vCPU thread, before any other processing.
  enum class Entry {
    not_mine,    // carry on as usual
    owned,       // a borrowed thread's step (or a new borrow): write `regs` back, nothing else
    given_back,  // a borrow ended here: `regs` are the thread's own again (write them back),
                 // and its original syscall now gets the usual processing (listeners,
                 // hypercall dispatch) as if it had just arrived
  };
  Entry on_entry(uint32_t vcpu, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xstate);

  bool busy() const { return busy_.load(std::memory_order_relaxed); }
  EngineStats stats() const;

  static uint64_t root(uint64_t cr3) { return cr3 & 0x000F'FFFF'FFFF'F000ULL; }
  // Scratch layout: one page of trampoline and call slots, the chain's data, then the stack.
  static constexpr uint64_t kTrampolinePage = 4096;

 private:
  struct Borrow {
    std::shared_ptr<Job> job;
    Candidate who;        // regs pointer not kept
    VcpuRegs saved;       // the thread at its original syscall entry
    std::vector<uint8_t> xsave;
    std::unique_ptr<ChainContext> cx;
    Chain chain;
    enum class Wait { syscall, call } wait = Wait::syscall;
    enum class Doing { chain, mapping, unmapping } doing = Doing::chain;
    uint64_t scratch = 0, scratch_len = 0;
    std::optional<ChainResult> result;  // set once the chain ended (then: unmap, restore)
    clock::time_point since;
    bool cancelled = false;  // its job gave up waiting: dropped once older than lost_after
    std::chrono::milliseconds lost_after{0};
  };
  void reap_lost();  // under mu_

  Borrow* find(uint64_t cr3, const VcpuRegs& regs);
  // Feeds `answer` to the borrow's state machine and sets `regs` for its next move.
  // False: the borrow ended (regs restored); it is then erased by the caller.
  bool advance(Borrow& b, int64_t answer, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xs);
  bool issue(Borrow& b, const Request& req, VcpuRegs& regs, GuestMemory& mem, ExtendedState& xs);
  void as_syscall(Borrow& b, VcpuRegs& regs, uint64_t nr, const std::array<uint64_t, 6>& a) const;
  void restore(Borrow& b, VcpuRegs& regs, ExtendedState& xs);
  void update_busy();  // under mu_

  std::function<void(bool)> set_exit_all_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<Job>> pending_;
  std::list<Borrow> borrows_;
  std::atomic<bool> busy_{false};
  bool exit_all_ = false;
  EngineStats stats_;
};

// The trampoline the engine writes at the start of a scratch area (exposed for tests):
// loads the 4th argument into RCX, calls [fn slot], then `syscall` with EAX = GEARS_SYSCALL_NR,
// EDI = kInjectDoneHc, RSI = the call's RAX.
std::vector<uint8_t> trampoline_code(uint64_t fn, uint64_t arg3);

}  // namespace gears::vmm::inject
