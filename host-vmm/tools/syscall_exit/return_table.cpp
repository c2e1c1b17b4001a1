#include "tools/syscall_exit/return_table.h"

#include <iterator>

namespace gears::vmm::syscall_exit {

namespace {
bool near(uint64_t a, uint64_t b) { return (a > b ? a - b : b - a) <= ReturnTable::kRspSlack; }
}  // namespace

void ReturnTable::expire(uint64_t now_ns) {
  std::erase_if(pending_, [&](const PendingReturn& p) {
    if (!(now_ns > p.time_ns && now_ns - p.time_ns > expire_ns_)) return false;
    ++(p.parent_returned ? stats_.child_unseen : stats_.expired);
    return true;
  });
}

void ReturnTable::on_entry(const PendingReturn& in) {
  PendingReturn p = in;
  p.cr3 = root(p.cr3);
  p.child_seen = false;
  expire(p.time_ns);
  std::erase_if(pending_, [&](const PendingReturn& q) {
    if (q.cr3 != p.cr3 || q.rsp != p.rsp) return false;
    ++(q.parent_returned ? stats_.child_unseen : stats_.missed);
    return true;
  });
  if (pending_.size() >= max_) {
    pending_.pop_front();
    ++stats_.evicted;
  }
  pending_.push_back(p);
  ++stats_.armed;
}

ReturnHit ReturnTable::on_step(uint64_t cr3, uint64_t rsp, uint64_t rax, uint64_t now_ns) {
  const uint64_t r = root(cr3);
  ReturnHit hit;
  // The caller first: its own CR3, nearest RSP (newest first among equals).
  auto best = pending_.end();
  for (auto it = pending_.begin(); it != pending_.end(); ++it) {
    if (it->cr3 != r || it->parent_returned || !near(it->rsp, rsp)) continue;
    if (it->fork_like && rax == 0 && !it->child_seen) continue;  // a fork never returns 0 to its caller
    best = it;
  }
  if (best != pending_.end()) {
    hit.kind = ReturnHit::Kind::kReturn;
    hit.entry = *best;
    if (best->fork_like && !best->child_seen) best->parent_returned = true;  // the child's trap may follow
    else pending_.erase(best);
    ++stats_.returns;
    expire(now_ns);
    return hit;
  }
  // A fork child: RAX 0, the parent's stack position, in a new CR3 (or the same for vfork).
  if (rax == 0)
    for (auto it = pending_.rbegin(); it != pending_.rend(); ++it) {
      if (!it->fork_like || it->child_seen || !near(it->rsp, rsp)) continue;
      it->child_seen = true;
      ++stats_.child_returns;
      hit.kind = ReturnHit::Kind::kChildReturn;
      hit.entry = *it;
      if (it->parent_returned) pending_.erase(std::next(it).base());
      return hit;
    }
  ++stats_.foreign;
  expire(now_ns);
  return hit;
}

void ReturnTable::drop_cr3(uint64_t cr3) {
  const uint64_t r = root(cr3);
  const size_t before = pending_.size();
  std::erase_if(pending_, [&](const PendingReturn& p) { return p.cr3 == r; });
  stats_.abandoned += before - pending_.size();
}

}  // namespace gears::vmm::syscall_exit
