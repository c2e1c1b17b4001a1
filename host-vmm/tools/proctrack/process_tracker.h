// Antfarm-style process tracking: guest processes inferred from outside, by address-space root.
//
// A pure state machine: the VMM feeds it events (a syscall entry or exit seen by the selective
// syscall-exit stub, a CR3 seen at any exit) with the time, and it keeps a table of processes.
//   creation  first sight of a CR3 that no live process owns;
//   exec      an execve entry, then the same vCPU showing a new CR3 within the join window:
//             the new address space continues the old process (Antfarm's fork->exec join),
//             named after the execve filename;
//   exit      an exit_group (or single-threaded exit) entry; the CR3 is then free, and a later
//             sight of it is a new process;
//   pid       from fork/vfork/clone return values (parent side) and getpid/getppid returns.
// A guest controls everything it reports here, so the tracker is a best-effort *observer*:
// it bounds its tables and never trusts a value for anything but bookkeeping.
// Not thread-safe: the owner serialises calls (one mutex around it in the VMM).
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace gears::vmm::proctrack {

struct SyscallEntry {
  uint32_t vcpu = 0;
  uint64_t cr3 = 0;
  uint64_t nr = 0;
  std::array<uint64_t, 6> args{};
  uint64_t time_ns = 0;
  // Filled by the caller for execve/execveat (read through introspection): the file name.
  std::string exec_filename;
  // Filled by the caller for clone3 (the flags live in guest memory); for clone it is args[0].
  uint64_t clone3_flags = 0;
};

struct SyscallExit {
  uint32_t vcpu = 0;
  uint64_t cr3 = 0;
  uint64_t nr = 0;
  int64_t ret = 0;
  uint64_t time_ns = 0;
  // The time_ns of this call's SyscallEntry where the VMM knows it (0: unknown): ties a fork's
  // parent and child returns to that exact fork.
  uint64_t entry_time_ns = 0;
};

struct Cr3Seen {
  uint32_t vcpu = 0;
  uint64_t cr3 = 0;
  uint64_t time_ns = 0;
};

enum class ProcessState : uint8_t {
  kRunning,
  kExited,    // exit_group/exit seen
  kVanished,  // its exit was never seen: its CR3 turned up as a new process, or reap() said so
};
const char* to_string(ProcessState s);

struct ProcessInfo {
  uint64_t id = 0;        // the tracker's own serial number, never reused
  uint64_t cr3 = 0;       // address-space root (PCID and flag bits masked off)
  int64_t pid = -1;       // guest pid (tgid) where observed, else -1
  int64_t ppid = -1;      // guest parent pid where observed, else -1
  uint64_t parent_id = 0; // tracker id of the parent where inferred, else 0
  std::string exe;        // last execve filename, empty until an exec was seen
  ProcessState state = ProcessState::kRunning;
  uint64_t created_ns = 0;
  uint64_t exited_ns = 0;
  uint64_t execs = 0;
  uint64_t syscalls = 0;
  uint32_t threads = 1;   // 1 + CLONE_THREAD clones - exits seen
  // Processes living in this one's address space: CLONE_VM children (not threads, not vfork)
  // that have not exited yet. An address-space observer cannot tell them from their parent.
  uint32_t shared_children = 0;
  // This process never had an address space of its own (a vfork child that exited without
  // exec, a CLONE_VM child): `cr3` is its parent's, and it was counted, not seen.
  bool shared_address_space = false;
  std::map<uint32_t, uint64_t> syscall_counts;  // per number, bounded (kMaxDistinctSyscalls)
};

struct TrackerCounters {
  uint64_t created = 0;
  uint64_t execs = 0;          // successful execs joined to their process
  uint64_t exec_moved = 0;     // of those, joined across vCPUs (the exec'd image ran elsewhere)
  uint64_t exited = 0;
  uint64_t vanished = 0;       // exits inferred from CR3 reuse
  uint64_t events = 0;
  uint64_t dropped = 0;        // processes not tracked because the live table was full
  // Of `created`: processes that shared their parent's address space for their whole life (a
  // vfork child that exited without exec, CLONE_VM children): counted from the calls, since
  // address spaces cannot show them.
  uint64_t shared_address_space = 0;
  // Forks whose child never showed itself within the join window (it made no selected system
  // call, e.g. it was killed first, and returns were off): a process that existed, and ended
  // unseen. Not in `created`; never guessed into another process.
  uint64_t unseen = 0;
};

struct TrackerConfig {
  // How long an exec waits for its new image, and a fork for its child, to show. Antfarm
  // joined fork->exec within ~1 ms on hardware; a loaded guest under emulation (the test
  // host) has been seen to take over 500 ms. A late join is still exact; an expired one counts
  // the process twice (unseen, then created).
  uint64_t exec_join_window_ns = 5'000'000'000;
  size_t max_live = 65536;
  size_t max_history = 1024;  // exited processes kept for queries
};

class ProcessTracker {
 public:
  static constexpr size_t kMaxDistinctSyscalls = 512;

  explicit ProcessTracker(TrackerConfig config = {}) : cfg_(config) {}

  void on_syscall_entry(const SyscallEntry& e);
  void on_syscall_exit(const SyscallExit& e);
  void on_cr3(const Cr3Seen& e);

  // For a VMM that can tell an address space is gone (e.g. its PML4's user half cleared):
  // marks every live process whose CR3 `gone` says is dead as vanished, except one whose
  // exec is in progress (its old address space goes before the new one shows).
  void reap(const std::function<bool(uint64_t cr3)>& gone, uint64_t time_ns);

  // Queries (copies, so callers may hold them after the tracker moves on).
  std::vector<ProcessInfo> live() const;
  std::vector<ProcessInfo> history() const;  // ended processes, oldest first
  std::optional<ProcessInfo> by_cr3(uint64_t cr3) const;
  // The live process on `cr3`, else the one that ended on it last (statistics gathered per
  // address space outlive the process: a root is reused only after its owner is gone).
  std::optional<ProcessInfo> last_by_cr3(uint64_t cr3) const;
  // The id of the live process on `cr3`, 0 when none (cheap: no copy; called per disk kick).
  uint64_t id_of(uint64_t cr3) const;
  std::optional<ProcessInfo> by_pid(int64_t pid) const;
  std::optional<ProcessInfo> by_id(uint64_t id) const;
  const TrackerCounters& counters() const { return counters_; }
  // Forks whose child has not shown itself yet (within the window): unseen if it never does.
  size_t awaiting_children() const;
  // Called with a process's id when it ends (exited or vanished), under the owner's lock: e.g.
  // the disks' schedulers stop anticipating it. Must not call back into the tracker.
  void set_on_end(std::function<void(uint64_t id)> f) { on_end_ = std::move(f); }

 private:
  struct PendingExec {
    uint64_t process_id = 0;  // the process that called execve
    uint64_t old_cr3 = 0;
    std::string filename;
    uint64_t time_ns = 0;
    bool vfork_child = false;  // execve from a vfork child running in its parent's CR3
    uint32_t vcpu = 0;         // where execve was entered
  };
  struct LastEntry {  // per vCPU: what the syscall now in progress there was
    uint32_t nr = 0;
    uint64_t flags = 0;
    uint64_t process_id = 0;
  };
  struct PendingFork {
    uint64_t parent_id = 0;
    uint32_t vcpu = 0;
    bool vfork = false;
    uint64_t child_id = 0;  // set when the child's CR3 is first seen
    uint64_t time_ns = 0;
    int64_t child_pid = -1;  // the parent's return came first: the pid waits for the child
    uint64_t entry_ns = 0;   // the fork's entry time: its identity for exact returns
  };

  static uint64_t root(uint64_t cr3);
  ProcessInfo* live_by_cr3(uint64_t cr3);
  // Sees `cr3` on `vcpu`: creates or joins as needed; returns the live owner (or nullptr when
  // the table is full).
  // `fork_child`: the event is a fork-like call's return 0 (the child itself), never an exec.
  // `image_start`: a call a fresh image makes first (brk, arch_prctl): may join another vCPU's exec.
  // `fork_entry_ns`: for a fork child's return, the entry time of its fork (0: unknown).
  ProcessInfo* observe(uint32_t vcpu, uint64_t cr3, uint64_t time_ns, bool fork_child = false,
                       bool image_start = false, uint64_t fork_entry_ns = 0);
  ProcessInfo* create(uint64_t cr3, uint64_t time_ns);
  // A process that lived in `parent`'s address space (see ProcessInfo::shared_address_space):
  // created and ended at once, straight into the history.
  void record_shared(const ProcessInfo& parent, int64_t pid, uint64_t time_ns);
  void end(ProcessInfo& p, ProcessState how, uint64_t time_ns);
  void count(ProcessInfo& p, uint64_t nr);
  PendingFork* pending_fork_of(uint64_t parent_id, uint32_t vcpu, bool only_unborn);
  PendingFork* pending_vfork_of(uint64_t parent_id);  // a vfork whose child has not exec'd
  void drop_pending_fork(const PendingFork* f);
  // The fork (not vfork) entered at `entry_ns` still waiting for its child; null when none or
  // when the entry time is unknown (0).
  const PendingFork* unborn_fork_entered_at(uint64_t entry_ns) const;
  ProcessInfo* any_by_id(uint64_t id);  // live or ended

  TrackerConfig cfg_;
  TrackerCounters counters_;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, ProcessInfo> live_;  // by CR3 root
  std::function<void(uint64_t)> on_end_;
  std::deque<ProcessInfo> history_;
  std::unordered_map<uint64_t, PendingExec> pending_exec_;  // by the calling process's id
  std::deque<PendingFork> pending_forks_;                   // oldest first, bounded
  std::unordered_map<uint32_t, LastEntry> last_entry_;      // by vCPU
};

}  // namespace gears::vmm::proctrack
