#include "tools/proctrack/process_tracker.h"

#include <algorithm>

#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::proctrack {

namespace sys = linux_x86_64;

namespace {
constexpr size_t kMaxPendingForks = 256;
constexpr size_t kMaxPendingExecs = 256;
// The kernel dispatches on the low 32 bits of RAX (x32's bit 30 aside): so does the tracker.
uint32_t syscall_nr(uint64_t rax) { return static_cast<uint32_t>(rax); }
bool is_fork_like(uint32_t nr, uint64_t flags) {
  if (nr == sys::kFork || nr == sys::kVfork) return true;
  if (nr == sys::kClone || nr == sys::kClone3) return !(flags & sys::kCloneVm) || (flags & sys::kCloneVfork);
  return false;
}
bool is_vfork_like(uint32_t nr, uint64_t flags) {
  return nr == sys::kVfork || ((nr == sys::kClone || nr == sys::kClone3) && (flags & sys::kCloneVfork));
}
}  // namespace

const char* to_string(ProcessState s) {
  switch (s) {
    case ProcessState::kRunning: return "running";
    case ProcessState::kExited: return "exited";
    case ProcessState::kVanished: return "vanished";
  }
  return "?";
}

uint64_t ProcessTracker::root(uint64_t cr3) { return cr3 & 0x000F'FFFF'FFFF'F000ULL; }

ProcessInfo* ProcessTracker::live_by_cr3(uint64_t cr3) {
  auto it = live_.find(root(cr3));
  return it == live_.end() ? nullptr : &it->second;
}

ProcessInfo* ProcessTracker::create(uint64_t cr3, uint64_t time_ns) {
  if (live_.size() >= cfg_.max_live) {
    ++counters_.dropped;
    return nullptr;
  }
  ProcessInfo p;
  p.id = next_id_++;
  p.cr3 = root(cr3);
  p.created_ns = time_ns;
  ++counters_.created;
  return &live_.emplace(p.cr3, std::move(p)).first->second;
}

void ProcessTracker::record_shared(const ProcessInfo& parent, int64_t pid, uint64_t time_ns) {
  ProcessInfo p;
  p.id = next_id_++;
  p.cr3 = parent.cr3;
  p.pid = pid;
  p.ppid = parent.pid;
  p.parent_id = parent.id;
  p.exe = parent.exe;
  p.created_ns = time_ns;
  p.shared_address_space = true;
  ++counters_.created;
  ++counters_.shared_address_space;
  end(p, ProcessState::kExited, time_ns);
}

void ProcessTracker::end(ProcessInfo& p, ProcessState how, uint64_t time_ns) {
  p.state = how;
  p.exited_ns = time_ns;
  if (how == ProcessState::kExited) ++counters_.exited;
  else ++counters_.vanished;
  const uint64_t id = p.id, cr3 = p.cr3;
  const bool shared = p.shared_address_space;
  pending_exec_.erase(id);
  if (on_end_) on_end_(id);
  if (cfg_.max_history > 0) {
    history_.push_back(std::move(p));
    if (history_.size() > cfg_.max_history) history_.pop_front();
  }
  // p is gone from here on (a shared record was never in the live table: its root is its parent's)
  if (!shared) live_.erase(cr3);
}

ProcessTracker::PendingFork* ProcessTracker::pending_vfork_of(uint64_t parent_id) {
  for (auto& f : pending_forks_)
    if (f.parent_id == parent_id && f.vfork && f.child_id == 0) return &f;
  return nullptr;
}

void ProcessTracker::count(ProcessInfo& p, uint64_t nr) {
  ++p.syscalls;
  uint32_t n = syscall_nr(nr);
  auto it = p.syscall_counts.find(n);
  if (it != p.syscall_counts.end()) ++it->second;
  else if (p.syscall_counts.size() < kMaxDistinctSyscalls) p.syscall_counts.emplace(n, 1);
}

ProcessTracker::PendingFork* ProcessTracker::pending_fork_of(uint64_t parent_id, uint32_t vcpu,
                                                             bool only_unborn) {
  PendingFork* any = nullptr;
  for (auto& f : pending_forks_) {
    if (f.parent_id != parent_id || (only_unborn && f.child_id != 0)) continue;
    if (f.vcpu == vcpu) return &f;
    if (!any) any = &f;
  }
  return any;
}

const ProcessTracker::PendingFork* ProcessTracker::unborn_fork_entered_at(uint64_t entry_ns) const {
  if (entry_ns == 0) return nullptr;  // unknown
  for (const auto& f : pending_forks_)
    if (!f.vfork && f.child_id == 0 && f.entry_ns == entry_ns) return &f;
  return nullptr;
}

void ProcessTracker::drop_pending_fork(const PendingFork* f) {
  std::erase_if(pending_forks_, [&](const PendingFork& x) { return &x == f; });
}

ProcessInfo* ProcessTracker::any_by_id(uint64_t id) {
  for (auto& [c, p] : live_)
    if (p.id == id) return &p;
  for (auto& p : history_)
    if (p.id == id) return &p;
  return nullptr;
}

ProcessInfo* ProcessTracker::observe(uint32_t vcpu, uint64_t cr3, uint64_t time_ns, bool fork_child,
                                     bool image_start, uint64_t fork_entry_ns) {
  ++counters_.events;
  const uint64_t r = root(cr3);
  // Forget joins and forks whose window has passed: the evidence is too old to pair.
  // Times come from several vCPU threads: one slightly behind another is not "expired".
  auto expired = [&](uint64_t then) { return time_ns > then && time_ns - then > cfg_.exec_join_window_ns; };
  std::erase_if(pending_exec_, [&](const auto& kv) { return expired(kv.second.time_ns); });
  // The oldest exec entered on this vCPU (several may wait there: a process that called execve
  // can be moved away before its image runs, and another one exec there meanwhile; execs take
  // about as long as each other, so the first in is the likeliest first out).
  auto pe = pending_exec_.end();
  for (auto it = pending_exec_.begin(); it != pending_exec_.end(); ++it)
    if (it->second.vcpu == vcpu && (pe == pending_exec_.end() || it->second.time_ns < pe->second.time_ns)) pe = it;
  while (!pending_forks_.empty() && expired(pending_forks_.front().time_ns)) {
    if (pending_forks_.front().child_id == 0) ++counters_.unseen;
    pending_forks_.pop_front();
  }

  if (ProcessInfo* known = live_by_cr3(r)) return known;

  // A CR3 nobody owns. First: the exec this vCPU was waiting for? A fork child's own return
  // (ret 0) is never an exec image.
  if (fork_child) pe = pending_exec_.end();
  // Another call than a fresh image's first (brk, arch_prctl) on a new root while a fork waits
  // for its child: the child, not an exec whose process ran on elsewhere (sched_exec moves it).
  if (pe != pending_exec_.end() && !image_start &&
      std::any_of(pending_forks_.begin(), pending_forks_.end(),
                  [](const PendingFork& f) { return !f.vfork && f.child_id == 0; }))
    pe = pending_exec_.end();
  bool moved = false;
  if (pe == pending_exec_.end() && image_start) {
    // The exec may have moved the process to another CPU (sched_exec balances at exec): a call
    // every fresh image makes first (brk, arch_prctl) joins the oldest live pending exec of
    // another vCPU. A mere CR3 sighting does not (it may be anyone's).
    for (auto it = pending_exec_.begin(); it != pending_exec_.end(); ++it) {
      if (it->second.vcpu == vcpu || it->second.old_cr3 == r) continue;
      if (pe == pending_exec_.end() || it->second.time_ns < pe->second.time_ns) pe = it;
    }
    moved = pe != pending_exec_.end();
  }
  if (pe != pending_exec_.end() && pe->second.old_cr3 != r) {
    PendingExec ex = std::move(pe->second);
    pending_exec_.erase(pe);
    if (ex.vfork_child) {
      // The vfork child ran in its parent's address space until now: a new process.
      ProcessInfo* child = create(r, time_ns);
      if (!child) return nullptr;
      child->parent_id = ex.process_id;
      child->exe = std::move(ex.filename);
      child->execs = 1;
      ++counters_.execs;
      if (moved) ++counters_.exec_moved;
      if (PendingFork* f = pending_vfork_of(ex.process_id)) f->child_id = child->id;
      if (ProcessInfo* parent = live_by_cr3(ex.old_cr3)) child->ppid = parent->pid;
      return child;
    }
    auto old = live_.find(ex.old_cr3);
    if (old != live_.end() && old->second.id == ex.process_id) {
      // Same process, new image: move the record to its new address-space root.
      ProcessInfo p = std::move(old->second);
      live_.erase(old);
      p.cr3 = r;
      p.exe = std::move(ex.filename);
      ++p.execs;
      p.threads = 1;  // exec kills the other threads
      ++counters_.execs;
      if (moved) ++counters_.exec_moved;
      return &live_.emplace(r, std::move(p)).first->second;
    }
  }

  ProcessInfo* p = create(r, time_ns);
  if (!p) return nullptr;
  // The child of its own fork when its return says which (the VMM ties it to the entry), else
  // of the oldest fork still waiting for one (any vCPU: the child may run anywhere).
  const bool exact = unborn_fork_entered_at(fork_entry_ns) != nullptr;
  for (auto& f : pending_forks_) {
    if (f.vfork || f.child_id != 0) continue;
    if (exact && f.entry_ns != fork_entry_ns) continue;
    f.child_id = p->id;
    p->parent_id = f.parent_id;
    for (const auto& [c, parent] : live_)
      if (parent.id == f.parent_id) {
        p->exe = parent.exe;  // a fork child runs its parent's program
        p->ppid = parent.pid;
      }
    if (f.child_pid > 0) {  // the parent's fork already returned the pid
      p->pid = f.child_pid;
      drop_pending_fork(&f);
    }
    break;
  }
  return p;
}

void ProcessTracker::on_cr3(const Cr3Seen& e) { observe(e.vcpu, e.cr3, e.time_ns); }

void ProcessTracker::on_syscall_entry(const SyscallEntry& e) {
  const uint32_t first_nr = syscall_nr(e.nr);
  ProcessInfo* p = observe(e.vcpu, e.cr3, e.time_ns, false, first_nr == sys::kBrk || first_nr == sys::kArchPrctl);
  if (!p) return;
  count(*p, e.nr);
  const uint32_t nr = syscall_nr(e.nr);
  const uint64_t flags = nr == sys::kClone ? e.args[0] : nr == sys::kClone3 ? e.clone3_flags : 0;
  last_entry_[e.vcpu] = {nr, flags, p->id};

  if (nr == sys::kExecve || nr == sys::kExecveat) {
    // A vfork child execs from its parent's CR3 while the parent waits in vfork.
    bool vfork_child = pending_vfork_of(p->id) != nullptr;
    if (pending_exec_.size() >= kMaxPendingExecs && !pending_exec_.contains(p->id)) return;  // bounded
    pending_exec_[p->id] = {p->id, p->cr3, e.exec_filename, e.time_ns, vfork_child, e.vcpu};
  } else if (is_fork_like(nr, flags)) {
    if (pending_forks_.size() >= kMaxPendingForks) {
      if (pending_forks_.front().child_id == 0) ++counters_.unseen;
      pending_forks_.pop_front();
    }
    PendingFork f;
    f.parent_id = p->id;
    f.vcpu = e.vcpu;
    f.vfork = is_vfork_like(nr, flags);
    f.time_ns = e.time_ns;
    f.entry_ns = e.time_ns;
    pending_forks_.push_back(f);
  } else if ((nr == sys::kClone || nr == sys::kClone3) && (flags & sys::kCloneThread)) {
    ++p->threads;
  } else if (nr == sys::kClone || nr == sys::kClone3) {
    // CLONE_VM without CLONE_THREAD or CLONE_VFORK: a process in this one's address space.
    ++p->shared_children;
  } else if (nr == sys::kExitGroup || nr == sys::kExit) {
    // In a vfork child (still in the parent's CR3), _exit ends the child, not the parent.
    if (const PendingFork* vf = pending_vfork_of(p->id)) {
      record_shared(*p, vf->child_pid, e.time_ns);
      drop_pending_fork(vf);
      return;
    }
    if (nr == sys::kExit && p->threads > 1) {
      --p->threads;
      return;
    }
    // A single-threaded process with CLONE_VM children: a bare exit (not exit_group) is a
    // child's (glibc's clone ends a child with exit; a process ends with exit_group).
    if (nr == sys::kExit && p->shared_children > 0) {
      --p->shared_children;
      record_shared(*p, -1, e.time_ns);
      return;
    }
    end(*p, ProcessState::kExited, e.time_ns);
  }
}

void ProcessTracker::on_syscall_exit(const SyscallExit& e) {
  const uint32_t nr = syscall_nr(e.nr);
  const bool fork_nr = nr == sys::kFork || nr == sys::kVfork || nr == sys::kClone || nr == sys::kClone3;
  ProcessInfo* p = observe(e.vcpu, e.cr3, e.time_ns, fork_nr && e.ret == 0, false,
                           fork_nr && e.ret == 0 ? e.entry_time_ns : 0);
  if (!p) return;
  LastEntry last{};
  if (auto it = last_entry_.find(e.vcpu); it != last_entry_.end() && it->second.nr == nr) last = it->second;
  const bool entry_known = last.process_id == p->id;

  switch (nr) {
    case sys::kGetpid:
      if (e.ret > 0) p->pid = e.ret;
      break;
    case sys::kGetppid:
      if (e.ret >= 0) p->ppid = e.ret;
      break;
    case sys::kExecve:
    case sys::kExecveat:
      // A failed exec returns in the old address space: nothing to join.
      if (e.ret < 0) {
        pending_exec_.erase(p->id);
      }
      break;
    case sys::kFork:
    case sys::kVfork:
    case sys::kClone:
    case sys::kClone3: {
      if (e.ret > 0) {
        // Parent side: the return value is the child's pid. The entry on this vCPU may have
        // been overwritten (a vfork child's execve ran in between): then any pending fork of
        // this process is taken; a known thread clone is not a fork.
        if (entry_known && !is_fork_like(nr, last.flags)) break;
        PendingFork* f = nullptr;
        if (e.entry_time_ns != 0)
          for (auto& x : pending_forks_)
            if (x.parent_id == p->id && x.entry_ns == e.entry_time_ns) f = &x;
        if (!f) f = pending_fork_of(p->id, e.vcpu, false);
        if (f) {
          if (f->child_id == 0) {
            // The child has not shown itself yet (it usually runs after its parent returns):
            // keep the pid for it, with a fresh window.
            f->child_pid = e.ret;
            f->time_ns = e.time_ns;
            break;
          }
          if (ProcessInfo* child = any_by_id(f->child_id)) {
            child->pid = e.ret;
            child->ppid = p->pid;
          }
          drop_pending_fork(f);
        }
      } else if (e.ret == 0) {
        // Child side. A fork child returns 0 in a brand-new address space, so a CR3 whose owner
        // already made syscalls belonged to a process whose exit we never saw.
        // With the fork's entry known, exactly: a fork still waiting for its child, returning on
        // a root some other process owns, says that owner is gone (its root was reused).
        const uint64_t owner = p->id;
        const PendingFork* own = unborn_fork_entered_at(e.entry_time_ns);
        const bool reused = own && own->parent_id != owner;
        const bool plain_fork = nr == sys::kFork || (nr == sys::kClone && p->threads == 1 &&
                                                     !pending_vfork_of(p->id) && p->shared_children == 0);
        if (reused || (plain_fork && p->syscalls > 0)) {
          const uint64_t cr3 = p->cr3;
          end(*p, ProcessState::kVanished, e.time_ns);
          observe(e.vcpu, cr3, e.time_ns, true, false, e.entry_time_ns);
        }
      } else if (entry_known && (nr == sys::kClone || nr == sys::kClone3) && (last.flags & sys::kCloneThread) &&
                 !(last.flags & sys::kCloneVfork) && p->threads > 1) {
        --p->threads;  // the thread was never created
      } else if (entry_known && is_fork_like(nr, last.flags)) {
        if (PendingFork* f = pending_fork_of(p->id, e.vcpu, true)) drop_pending_fork(f);
      }
      break;
    }
    default:
      break;
  }
}

void ProcessTracker::reap(const std::function<bool(uint64_t cr3)>& gone, uint64_t time_ns) {
  std::vector<uint64_t> dead;
  for (const auto& [cr3, p] : live_) {
    // An exec in progress tears the old address space down before its new one is seen: the
    // process lives on.
    const uint64_t id = p.id;
    if (pending_exec_.contains(id)) continue;
    if (gone(cr3)) dead.push_back(cr3);
  }
  for (uint64_t cr3 : dead) end(live_.at(cr3), ProcessState::kVanished, time_ns);
}

size_t ProcessTracker::awaiting_children() const {
  return static_cast<size_t>(
      std::count_if(pending_forks_.begin(), pending_forks_.end(), [](const PendingFork& f) { return f.child_id == 0; }));
}

std::vector<ProcessInfo> ProcessTracker::live() const {
  std::vector<ProcessInfo> out;
  out.reserve(live_.size());
  for (const auto& [cr3, p] : live_) out.push_back(p);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.id < b.id; });
  return out;
}

std::vector<ProcessInfo> ProcessTracker::history() const { return {history_.begin(), history_.end()}; }

std::optional<ProcessInfo> ProcessTracker::by_cr3(uint64_t cr3) const {
  auto it = live_.find(root(cr3));
  if (it == live_.end()) return std::nullopt;
  return it->second;
}

uint64_t ProcessTracker::id_of(uint64_t cr3) const {
  auto it = live_.find(root(cr3));
  return it == live_.end() ? 0 : it->second.id;
}

std::optional<ProcessInfo> ProcessTracker::last_by_cr3(uint64_t cr3) const {
  if (auto p = by_cr3(cr3)) return p;
  const uint64_t r = root(cr3);
  for (auto it = history_.rbegin(); it != history_.rend(); ++it)
    if (it->cr3 == r) return *it;
  return std::nullopt;
}

std::optional<ProcessInfo> ProcessTracker::by_pid(int64_t pid) const {
  for (const auto& [cr3, p] : live_)
    if (p.pid == pid) return p;
  return std::nullopt;
}

std::optional<ProcessInfo> ProcessTracker::by_id(uint64_t id) const {
  for (const auto& [cr3, p] : live_)
    if (p.id == id) return p;
  for (const auto& p : history_)
    if (p.id == id) return p;
  return std::nullopt;
}

}  // namespace gears::vmm::proctrack
