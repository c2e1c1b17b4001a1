#include <gtest/gtest.h>

#include "tools/proctrack/linux_syscalls.h"
#include "tools/proctrack/process_tracker.h"

namespace gears::vmm::proctrack {
namespace {

namespace sys = linux_x86_64;

// A scripted guest: each call is one event at a time that advances by 1 us.
class Script {
 public:
  explicit Script(TrackerConfig cfg = {}) : t(cfg) {}
  void enter(uint32_t vcpu, uint64_t cr3, uint64_t nr, uint64_t arg0 = 0, std::string file = {}) {
    SyscallEntry e;
    e.vcpu = vcpu;
    e.cr3 = cr3;
    e.nr = nr;
    e.args[0] = arg0;
    e.time_ns = now += 1000;
    e.exec_filename = std::move(file);
    t.on_syscall_entry(e);
  }
  void leave(uint32_t vcpu, uint64_t cr3, uint64_t nr, int64_t ret) {
    t.on_syscall_exit({vcpu, cr3, nr, ret, now += 1000});
  }
  void see(uint32_t vcpu, uint64_t cr3) { t.on_cr3({vcpu, cr3, now += 1000}); }
  void wait(uint64_t ns) { now += ns; }
  ProcessInfo at(uint64_t cr3) {
    auto p = t.by_cr3(cr3);
    EXPECT_TRUE(p.has_value()) << "no live process with CR3 " << cr3;
    return p.value_or(ProcessInfo{});
  }
  ProcessTracker t;
  uint64_t now = 0;
};

constexpr uint64_t kShell = 0x1000, kChild = 0x2000, kOther = 0x3000;
constexpr uint64_t kCloneFork = 0x11;  // SIGCHLD: glibc's fork()

TEST(ProcTrack, FirstSightCreatesAndCountsSyscalls) {
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  s.leave(0, kShell, sys::kGetpid, 100);
  s.enter(0, kShell | 0x3 | (1ULL << 63), 0);  // PCID and no-flush bits do not make a new process
  auto p = s.at(kShell);
  EXPECT_EQ(p.pid, 100);
  EXPECT_EQ(p.syscalls, 2u);
  EXPECT_EQ(p.syscall_counts[sys::kGetpid], 1u);
  EXPECT_EQ(p.syscall_counts[0], 1u);
  EXPECT_EQ(s.t.counters().created, 1u);
  EXPECT_EQ(s.t.live().size(), 1u);
}

TEST(ProcTrack, ForkExecExit) {
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  s.leave(0, kShell, sys::kGetpid, 100);
  s.enter(0, kShell, sys::kClone, kCloneFork);        // fork()
  s.see(1, kChild);                                    // the child's copy runs on vCPU 1
  s.leave(1, kChild, sys::kClone, 0);
  s.leave(0, kShell, sys::kClone, 101);                // parent learns the pid
  auto child = s.at(kChild);
  EXPECT_EQ(child.pid, 101);
  EXPECT_EQ(child.ppid, 100);
  EXPECT_EQ(child.parent_id, s.at(kShell).id);
  const uint64_t child_id = child.id;

  s.enter(1, kChild, sys::kExecve, 0, "/bin/ls");
  s.see(1, 0x4000);                                    // exec's fresh address space
  EXPECT_FALSE(s.t.by_cr3(kChild));                    // the fork copy is gone ...
  auto ls = s.at(0x4000);                              // ... joined to the same process
  EXPECT_EQ(ls.id, child_id);
  EXPECT_EQ(ls.pid, 101);
  EXPECT_EQ(ls.exe, "/bin/ls");
  EXPECT_EQ(ls.execs, 1u);

  s.enter(1, 0x4000, sys::kExitGroup);
  EXPECT_FALSE(s.t.by_cr3(0x4000));
  ASSERT_EQ(s.t.history().size(), 1u);
  EXPECT_EQ(s.t.history()[0].state, ProcessState::kExited);
  EXPECT_EQ(s.t.history()[0].exe, "/bin/ls");
  EXPECT_GT(s.t.history()[0].exited_ns, 0u);
  // Per-address-space statistics (disks) still find who ran on the root after it ended.
  ASSERT_TRUE(s.t.last_by_cr3(0x4000));
  EXPECT_EQ(s.t.last_by_cr3(0x4000)->pid, 101);
  EXPECT_EQ(s.t.last_by_cr3(kShell)->pid, 100);  // live comes first
  EXPECT_FALSE(s.t.last_by_cr3(0x9000));
  EXPECT_EQ(s.t.id_of(kShell), s.at(kShell).id);
  EXPECT_EQ(s.t.id_of(0x4000), 0u);  // ended: no live process there
  EXPECT_EQ(s.t.counters().created, 2u);  // shell + child; the exec created no process
  EXPECT_EQ(s.t.counters().execs, 1u);
  EXPECT_EQ(s.t.counters().exited, 1u);
  ASSERT_TRUE(s.t.by_id(child_id));
}

// Whoever keeps per-process state (the disks' schedulers) hears of each end, exit or vanish.
TEST(ProcTrack, EndsAreReported) {
  Script s;
  std::vector<uint64_t> ended;
  s.t.set_on_end([&](uint64_t id) { ended.push_back(id); });
  s.enter(0, kShell, sys::kGetpid);
  const uint64_t shell = s.at(kShell).id;
  s.enter(0, kShell, sys::kExitGroup);
  EXPECT_EQ(ended, (std::vector<uint64_t>{shell}));
  s.t.reap([](uint64_t) { return true; }, 1);  // nothing live: nothing more
  EXPECT_EQ(ended.size(), 1u);
}

TEST(ProcTrack, ForkReturnsBeforeTheChildRuns) {
  // The usual order on Linux: the parent's fork returns the pid, the child runs later (its own
  // first return, ret 0, in its new CR3); the pid waits for it, and survives the child's exec.
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  s.leave(0, kShell, sys::kGetpid, 100);
  s.enter(0, kShell, sys::kClone, kCloneFork);
  s.leave(0, kShell, sys::kClone, 123);
  s.leave(1, kChild, sys::kClone, 0);  // the child's return from ret_from_fork, on the other vCPU
  auto c = s.at(kChild);
  EXPECT_EQ(c.pid, 123);
  EXPECT_EQ(c.ppid, 100);
  s.enter(1, kChild, sys::kExecve, 0, "/bin/true");
  s.see(1, kOther);
  EXPECT_EQ(s.at(kOther).pid, 123);
  EXPECT_EQ(s.at(kOther).exe, "/bin/true");
  // A second fork whose child is never seen: the pid is not given to an unrelated process.
  s.enter(0, kShell, sys::kClone, kCloneFork);
  s.leave(0, kShell, sys::kClone, 124);
  s.wait(TrackerConfig{}.exec_join_window_ns + 1);
  s.see(0, 0x9000);
  EXPECT_EQ(s.at(0x9000).pid, -1);
}

TEST(ProcTrack, ExecMovedToAnotherVcpuStillJoins) {
  // sched_exec may run the new image on another CPU: its first syscall there is the exec's.
  Script s;
  s.enter(0, kShell, sys::kClone, kCloneFork);
  s.leave(0, kShell, sys::kClone, 200);
  s.leave(0, kChild, sys::kClone, 0);  // the child's own return
  s.enter(0, kChild, sys::kExecve, 0, "/bin/x");
  s.enter(1, kOther, 12);  // brk of the new image, on vCPU 1
  EXPECT_EQ(s.at(kOther).pid, 200);
  EXPECT_EQ(s.at(kOther).exe, "/bin/x");
  EXPECT_EQ(s.t.counters().exec_moved, 1u);
  // A fork child's own return on a vCPU with a pending exec is not that exec.
  s.enter(1, kOther, sys::kClone, kCloneFork);
  s.enter(0, kOther, sys::kExecve, 0, "/bin/y");
  s.leave(1, 0x7000, sys::kClone, 0);
  EXPECT_EQ(s.at(0x7000).exe, "/bin/x");  // the fork child runs its parent's program
  EXPECT_EQ(s.at(kOther).exe, "/bin/x");
}

TEST(ProcTrack, TwoForksTiedToTheirChildrenByEntryTime) {
  // `a & b`: two forks in a row; the second child shows up first and the returns come in any
  // order. With the entry time in the return events each child gets its own pid.
  Script s;
  s.enter(0, kShell, sys::kClone, kCloneFork);
  const uint64_t fork1 = s.now;
  s.enter(0, kShell, sys::kClone, kCloneFork);
  const uint64_t fork2 = s.now;
  s.t.on_syscall_exit({1, kOther, sys::kClone, 0, s.now += 1000, fork2});  // child 2 first
  s.t.on_syscall_exit({0, kShell, sys::kClone, 301, s.now += 1000, fork1});
  s.t.on_syscall_exit({0, kShell, sys::kClone, 302, s.now += 1000, fork2});
  s.t.on_syscall_exit({1, kChild, sys::kClone, 0, s.now += 1000, fork1});
  EXPECT_EQ(s.at(kOther).pid, 302);
  EXPECT_EQ(s.at(kChild).pid, 301);
}

TEST(ProcTrack, FailedExecDoesNotJoin) {
  Script s;
  s.enter(0, kShell, sys::kExecve, 0, "/nonexistent");
  s.leave(0, kShell, sys::kExecve, -2);
  s.see(0, kOther);  // some other new process scheduled next on that vCPU
  EXPECT_TRUE(s.t.by_cr3(kShell));
  EXPECT_TRUE(s.t.by_cr3(kOther));
  EXPECT_EQ(s.t.counters().execs, 0u);
}

TEST(ProcTrack, ExecJoinHasATimeWindow) {
  TrackerConfig cfg;
  cfg.exec_join_window_ns = 1'000'000;
  Script s(cfg);
  s.enter(0, kShell, sys::kExecve, 0, "/bin/sh");
  s.wait(5'000'000);
  s.see(0, kOther);  // too late to be that exec: a new process
  EXPECT_TRUE(s.t.by_cr3(kShell));
  EXPECT_TRUE(s.t.by_cr3(kOther));
  EXPECT_EQ(s.t.counters().execs, 0u);
}

TEST(ProcTrack, ExecJoinIgnoresKnownAddressSpaces) {
  Script s;
  s.see(0, kOther);
  s.enter(0, kShell, sys::kExecve, 0, "/bin/true");
  s.see(0, kOther);   // a context switch to an existing process in between
  s.see(0, kChild);   // then the exec image appears
  EXPECT_FALSE(s.t.by_cr3(kShell));
  EXPECT_EQ(s.at(kChild).exe, "/bin/true");
  EXPECT_EQ(s.t.counters().created, 2u);
}

TEST(ProcTrack, VforkThenExec) {
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  s.leave(0, kShell, sys::kGetpid, 100);
  s.enter(0, kShell, sys::kVfork);
  // The child runs in the parent's address space and execs from there.
  s.enter(0, kShell, sys::kExecve, 0, "/bin/date");
  s.see(0, kChild);
  s.leave(0, kShell, sys::kVfork, 102);  // the parent resumes with the child's pid
  auto shell = s.at(kShell);
  EXPECT_EQ(shell.exe, "");           // the parent did not exec
  EXPECT_EQ(shell.state, ProcessState::kRunning);
  auto date = s.at(kChild);
  EXPECT_EQ(date.exe, "/bin/date");
  EXPECT_EQ(date.parent_id, shell.id);
  EXPECT_EQ(date.pid, 102);
  EXPECT_EQ(date.ppid, 100);
  EXPECT_EQ(s.t.counters().created, 2u);
  EXPECT_EQ(s.t.counters().execs, 1u);
}

TEST(ProcTrack, PosixSpawnStyleCloneVforkVm) {
  Script s;
  s.enter(0, kShell, sys::kClone, sys::kCloneVm | sys::kCloneVfork | 0x11);
  s.enter(0, kShell, sys::kExecve, 0, "/bin/cat");
  s.see(1, kChild);  // a different vCPU shows a new CR3: not the exec (that was on vCPU 0)
  s.see(0, 0x5000);
  EXPECT_EQ(s.at(0x5000).exe, "/bin/cat");
  EXPECT_EQ(s.at(kShell).exe, "");
}

TEST(ProcTrack, VforkChildExitsWithoutExec) {
  Script s;
  s.enter(0, kShell, sys::kVfork);
  s.enter(0, kShell, sys::kExitGroup);  // the child's _exit(), in the parent's CR3
  s.leave(0, kShell, sys::kVfork, 103);
  EXPECT_TRUE(s.t.by_cr3(kShell));
  // The child lived and died in its parent's address space: counted, not seen.
  EXPECT_EQ(s.t.counters().created, 2u);
  EXPECT_EQ(s.t.counters().shared_address_space, 1u);
  EXPECT_EQ(s.t.counters().exited, 1u);
  ASSERT_EQ(s.t.history().size(), 1u);
  EXPECT_TRUE(s.t.history()[0].shared_address_space);
  EXPECT_EQ(s.t.history()[0].parent_id, s.at(kShell).id);
  s.enter(0, kShell, sys::kExitGroup);  // now the parent itself
  EXPECT_FALSE(s.t.by_cr3(kShell));
  EXPECT_EQ(s.t.counters().exited, 2u);
}

// clone(CLONE_VM) without CLONE_THREAD: a process in its parent's address space. Its end (a
// bare exit, glibc's clone child) ends it, not the parent; its return 0 (with returns on)
// is not a sign that the parent's root was reused.
TEST(ProcTrack, CloneVmChildSharesTheAddressSpace) {
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  const uint64_t shell = s.at(kShell).id;
  s.enter(0, kShell, sys::kClone, sys::kCloneVm | 0x11);
  s.leave(1, kShell, sys::kClone, 0);    // the child, same CR3, other vCPU
  s.leave(0, kShell, sys::kClone, 104);  // the parent
  s.enter(1, kShell, sys::kExit);        // the child ends
  ASSERT_TRUE(s.t.by_cr3(kShell));
  EXPECT_EQ(s.at(kShell).id, shell);
  EXPECT_EQ(s.t.counters().vanished, 0u);
  EXPECT_EQ(s.t.counters().created, 2u);
  EXPECT_EQ(s.t.counters().shared_address_space, 1u);
  EXPECT_EQ(s.t.counters().exited, 1u);
  EXPECT_EQ(s.at(kShell).shared_children, 0u);
  s.enter(0, kShell, sys::kExit);  // now a bare exit is the parent's own
  EXPECT_FALSE(s.t.by_cr3(kShell));
}

// A fork whose child never makes a selected call (killed at once, returns off): counted as
// unseen once the join window has passed, not created, and not joined to a later stranger.
TEST(ProcTrack, ForkWhoseChildNeverShowsIsUnseen) {
  Script s;
  s.enter(0, kShell, sys::kClone, kCloneFork);
  EXPECT_EQ(s.t.awaiting_children(), 1u);
  s.wait(TrackerConfig{}.exec_join_window_ns + 1);
  s.enter(1, kOther, sys::kGetpid);  // a stranger, long after
  EXPECT_EQ(s.t.awaiting_children(), 0u);
  EXPECT_EQ(s.t.counters().unseen, 1u);
  EXPECT_EQ(s.at(kOther).parent_id, 0u);
}

// A process killed by a signal makes no exit call: the VMM reaps its torn-down address space.
// One whose exec is under way is not reaped (its old address space goes first).
TEST(ProcTrack, ReapEndsGoneAddressSpacesButNotAnExecInProgress) {
  Script s;
  s.enter(0, kShell, sys::kGetpid);
  s.enter(1, kChild, sys::kGetpid);
  s.enter(1, kChild, sys::kExecve, 0, "/bin/ls");
  s.t.reap([](uint64_t) { return true; }, s.now);
  EXPECT_FALSE(s.t.by_cr3(kShell));
  EXPECT_EQ(s.t.counters().vanished, 1u);
  ASSERT_TRUE(s.t.by_cr3(kChild));
  s.see(1, kOther);  // the exec's image
  EXPECT_EQ(s.at(kOther).exe, "/bin/ls");
}

TEST(ProcTrack, ThreadsShareOneProcess) {
  Script s;
  const uint64_t thread_flags = sys::kCloneVm | sys::kCloneThread | 0x3d0f00;
  s.enter(0, kShell, sys::kClone, thread_flags);
  s.enter(0, kShell, sys::kClone, thread_flags);
  s.leave(1, kShell, sys::kClone, 0);  // a new thread returns 0 on another vCPU, same CR3
  s.enter(1, kShell, sys::kGetpid);
  EXPECT_EQ(s.t.live().size(), 1u);
  EXPECT_EQ(s.at(kShell).threads, 3u);
  EXPECT_EQ(s.t.counters().vanished, 0u);
  s.enter(1, kShell, sys::kExit);  // one thread ends
  EXPECT_EQ(s.at(kShell).threads, 2u);
  s.enter(0, kShell, sys::kExit);
  s.enter(0, kShell, sys::kExit);  // the last one: the process is gone
  EXPECT_FALSE(s.t.by_cr3(kShell));
  EXPECT_EQ(s.t.counters().exited, 1u);
}

TEST(ProcTrack, FailedThreadCloneIsUncounted) {
  Script s;
  s.enter(0, kShell, sys::kClone, sys::kCloneVm | sys::kCloneThread);
  s.leave(0, kShell, sys::kClone, -11);
  EXPECT_EQ(s.at(kShell).threads, 1u);
}

TEST(ProcTrack, Cr3ReuseAfterExitIsANewProcess) {
  Script s;
  s.enter(0, kShell, sys::kExecve, 0, "/bin/a");
  s.see(0, kChild);
  s.enter(0, kChild, sys::kExitGroup);
  s.see(1, kChild);  // the page-table page was recycled for someone else
  auto p = s.at(kChild);
  EXPECT_EQ(p.exe, "");
  EXPECT_EQ(p.execs, 0u);
  EXPECT_EQ(s.t.counters().created, 2u);
  EXPECT_EQ(s.t.history().back().exe, "/bin/a");
}

TEST(ProcTrack, ExitNeverSeenDetectedByForkReturnInOldCr3) {
  Script s;
  s.enter(0, kOther, sys::kGetpid);
  s.leave(0, kOther, sys::kGetpid, 50);  // process 50 ... is killed by a signal, unseen
  s.enter(1, kShell, sys::kClone, kCloneFork);
  s.leave(0, kOther, sys::kClone, 0);     // a fork child returns 0 in kOther: it is recycled
  s.leave(1, kShell, sys::kClone, 51);
  auto p = s.at(kOther);
  EXPECT_EQ(p.pid, 51);
  EXPECT_EQ(p.parent_id, s.at(kShell).id);
  EXPECT_EQ(s.t.counters().vanished, 1u);
  ASSERT_EQ(s.t.history().size(), 1u);
  EXPECT_EQ(s.t.history()[0].pid, 50);
  EXPECT_EQ(s.t.history()[0].state, ProcessState::kVanished);
}

// clone3 (or a clone whose owner had threads) reusing a killed process's root: the fork's own
// entry time, carried by its child's return, says the root's owner is not that child.
TEST(ProcTrack, ForkChildOnAReusedRootEndsItsOldOwnerExactly) {
  Script s;
  s.enter(0, kOther, sys::kClone, 0x10000 | 0x100);  // kOther has a thread: no plain-fork guess
  s.enter(1, kShell, sys::kClone3);                   // a fork (clone3 flags 0)
  const uint64_t fork_entry = s.now;
  s.t.on_syscall_exit({0, kOther, sys::kClone3, 0, s.now += 1000, fork_entry});  // the child, in kOther
  s.t.on_syscall_exit({1, kShell, sys::kClone3, 61, s.now += 1000, fork_entry});
  auto child = s.at(kOther);
  EXPECT_EQ(child.parent_id, s.at(kShell).id);
  EXPECT_EQ(child.pid, 61);
  EXPECT_EQ(s.t.counters().vanished, 1u);
  EXPECT_EQ(s.t.counters().created, 3u);
  EXPECT_EQ(s.t.counters().unseen, 0u);
}

// An exec on vCPU 0 whose image runs on vCPU 1, and a fork child's first call on vCPU 0: the
// child is the fork's, the image (its first call brk) the exec's, not the other way round.
TEST(ProcTrack, ForkChildIsNotTakenForAnExecThatMovedAway) {
  constexpr uint64_t kImage = 0x4000;
  Script s;
  s.enter(0, kOther, sys::kExecve, 0, "/bin/x");
  s.enter(1, kShell, sys::kFork);
  s.enter(0, kChild, sys::kExitGroup);  // the fork child: exits at once
  s.enter(1, kImage, sys::kBrk);        // the exec'd image, moved to vCPU 1
  EXPECT_EQ(s.t.counters().execs, 1u);
  EXPECT_EQ(s.t.counters().exec_moved, 1u);
  auto image = s.at(kImage);
  EXPECT_EQ(image.exe, "/bin/x");
  ASSERT_EQ(s.t.history().size(), 1u);
  EXPECT_EQ(s.t.history()[0].parent_id, s.at(kShell).id);
  EXPECT_EQ(s.t.history()[0].execs, 0u);
}

TEST(ProcTrack, ReapMarksVanished) {
  Script s;
  s.see(0, kShell);
  s.see(0, kOther);
  s.t.reap([](uint64_t cr3) { return cr3 == kOther; }, 99);
  EXPECT_TRUE(s.t.by_cr3(kShell));
  EXPECT_FALSE(s.t.by_cr3(kOther));
  EXPECT_EQ(s.t.counters().vanished, 1u);
  EXPECT_EQ(s.t.history()[0].exited_ns, 99u);
}

TEST(ProcTrack, TablesAreBounded) {
  TrackerConfig cfg;
  cfg.max_live = 4;
  cfg.max_history = 2;
  Script s(cfg);
  for (uint64_t i = 1; i <= 10; ++i) s.see(0, i << 12);
  EXPECT_EQ(s.t.live().size(), 4u);
  EXPECT_EQ(s.t.counters().dropped, 6u);
  for (uint64_t i = 1; i <= 4; ++i) s.enter(0, i << 12, sys::kExitGroup);
  EXPECT_EQ(s.t.history().size(), 2u);
  // Distinct syscall numbers per process are bounded too (a guest may use any RAX).
  for (uint64_t nr = 0; nr < 2000; ++nr) s.enter(0, kShell, 1000 + nr);
  EXPECT_EQ(s.at(kShell).syscall_counts.size(), ProcessTracker::kMaxDistinctSyscalls);
  EXPECT_EQ(s.at(kShell).syscalls, 2000u);
}

TEST(ProcTrack, TimeGoingBackwardsAcrossVcpusDoesNotExpireJoins) {
  Script s;
  s.enter(0, kShell, sys::kExecve, 0, "/bin/x");
  s.t.on_cr3({0, kChild, 1});  // an earlier timestamp from another thread's clock
  EXPECT_EQ(s.at(kChild).exe, "/bin/x");
}

}  // namespace
}  // namespace gears::vmm::proctrack
