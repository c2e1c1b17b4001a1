// Syscall returns, the part that needs no KVM: which threads wait for a syscall's return, and
// whose return a single-step trap is (doc/toolset.md, "Syscall exit events").
//
// At the stub's entry exit for a number whose return is wanted, the VMM sets TF in R11 (the
// user RFLAGS that SYSCALL saved and the kernel restores on the way back) and records the thread
// here by (CR3, user RSP). The thread then traps (#DB, single step) after its first user-mode
// instruction following the syscall, on whatever vCPU it runs: SYSCALL does not touch RSP and
// the return restores it, and one instruction moves RSP by little (push/pop/ret), so
//   - the same CR3 and an RSP within kRspSlack: the return of that syscall (RAX = its value);
//   - a fork-like call with RAX == 0 near the same RSP in another CR3 (fork child) or the same
//     (vfork child): the child's first return, once (the child inherits TF with the parent's
//     saved registers); whichever of parent and child returns first, the entry stays until
//     both did (or it expires);
//   - nothing: a single step nobody here asked for (or whose entry was dropped): foreign.
// Misses are counted, never invented: a thread whose next wanted entry arrives while the
// previous one is pending ("missed"), entries older than the expiry ("expired": a successful
// execve never returns), exit_group ("abandoned"), a full table ("evicted").
// Not thread-safe: the owner serialises calls.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>

namespace gears::vmm::syscall_exit {

struct PendingReturn {
  uint32_t vcpu = 0;  // where the entry was seen
  uint64_t cr3 = 0;
  uint64_t rsp = 0;
  uint64_t rip = 0;   // RCX at the entry: the instruction after SYSCALL
  uint32_t nr = 0;
  std::array<uint64_t, 6> args{};
  uint64_t time_ns = 0;
  bool fork_like = false;  // a child may return 0 too
  bool child_seen = false;
  bool parent_returned = false;  // a fork whose child has not trapped yet: kept for the child
};

struct ReturnHit {
  enum class Kind { kForeign, kReturn, kChildReturn } kind = Kind::kForeign;
  PendingReturn entry;  // the matching entry (kReturn, kChildReturn)
};

struct ReturnStats {
  uint64_t armed = 0;          // entries recorded
  uint64_t returns = 0;        // returns delivered (the caller's side)
  uint64_t child_returns = 0;  // fork/vfork children's first returns delivered
  uint64_t missed = 0;         // the same thread's next entry came first
  uint64_t child_unseen = 0;   // a fork's child never trapped (its entry replaced or expired)
  uint64_t expired = 0;        // older than the expiry (includes successful execs)
  uint64_t abandoned = 0;      // dropped at the process's exit_group
  uint64_t evicted = 0;        // the table was full
  uint64_t foreign = 0;        // a trap that matched no entry
};

class ReturnTable {
 public:
  // How far one user instruction may move RSP and still be "the same thread" (threads' stacks
  // are pages apart).
  static constexpr uint64_t kRspSlack = 512;

  explicit ReturnTable(size_t max_pending = 4096, uint64_t expire_ns = 30'000'000'000ULL)
      : max_(max_pending), expire_ns_(expire_ns) {}

  void on_entry(const PendingReturn& p);
  ReturnHit on_step(uint64_t cr3, uint64_t rsp, uint64_t rax, uint64_t now_ns);
  // exit_group in `cr3`: none of its pending calls will return.
  void drop_cr3(uint64_t cr3);
  void expire(uint64_t now_ns);

  size_t pending() const { return pending_.size(); }
  const ReturnStats& stats() const { return stats_; }

  static uint64_t root(uint64_t cr3) { return cr3 & 0x000F'FFFF'FFFF'F000ULL; }

 private:
  size_t max_;
  uint64_t expire_ns_;
  std::deque<PendingReturn> pending_;  // oldest first
  ReturnStats stats_;
};

}  // namespace gears::vmm::syscall_exit
