// ReturnTable: whose syscall return a single-step trap after SYSCALL is.
#include "tools/syscall_exit/return_table.h"

#include <gtest/gtest.h>

namespace gears::vmm::syscall_exit {
namespace {

constexpr uint64_t kCr3A = 0x1000, kCr3B = 0x2000;

PendingReturn entry(uint64_t cr3, uint64_t rsp, uint32_t nr, uint64_t t = 1, bool fork = false) {
  PendingReturn p;
  p.cr3 = cr3;
  p.rsp = rsp;
  p.rip = 0x401000;
  p.nr = nr;
  p.time_ns = t;
  p.fork_like = fork;
  return p;
}

TEST(ReturnTable, MatchesTheCallingThread) {
  ReturnTable t;
  t.on_entry(entry(kCr3A, 0x7ff000, 8));
  t.on_entry(entry(kCr3A, 0x6ff000, 39));  // another thread of the same process
  // Another process, or a stack far away: not these.
  EXPECT_EQ(t.on_step(kCr3B, 0x7ff000, 5, 2).kind, ReturnHit::Kind::kForeign);
  EXPECT_EQ(t.on_step(kCr3A, 0x5ff000, 5, 2).kind, ReturnHit::Kind::kForeign);
  // One instruction later (a `ret` popped 8 bytes), PCID bits set: the lseek's return.
  auto h = t.on_step(kCr3A | 0x5, 0x7ff008, 1234, 3);
  EXPECT_EQ(h.kind, ReturnHit::Kind::kReturn);
  EXPECT_EQ(h.entry.nr, 8u);
  EXPECT_EQ(t.on_step(kCr3A, 0x6ff000, 77, 4).entry.nr, 39u);
  EXPECT_EQ(t.pending(), 0u);
  EXPECT_EQ(t.stats().returns, 2u);
  EXPECT_EQ(t.stats().foreign, 2u);
}

TEST(ReturnTable, ForkChildThenParent) {
  ReturnTable t;
  t.on_entry(entry(kCr3A, 0x7000, 57, 1, true));
  auto child = t.on_step(kCr3B, 0x7000, 0, 2);  // the child, in its new CR3, returns 0
  EXPECT_EQ(child.kind, ReturnHit::Kind::kChildReturn);
  EXPECT_EQ(child.entry.nr, 57u);
  EXPECT_EQ(t.on_step(kCr3B, 0x7000, 0, 3).kind, ReturnHit::Kind::kForeign);  // once
  auto parent = t.on_step(kCr3A, 0x7000, 42, 4);
  EXPECT_EQ(parent.kind, ReturnHit::Kind::kReturn);
  EXPECT_EQ(t.stats().child_returns, 1u);
}

TEST(ReturnTable, ParentBeforeChild) {
  ReturnTable t;
  t.on_entry(entry(kCr3A, 0x7000, 56, 1, true));
  EXPECT_EQ(t.on_step(kCr3A, 0x7000, 42, 2).kind, ReturnHit::Kind::kReturn);
  EXPECT_EQ(t.pending(), 1u);  // kept for the child
  EXPECT_EQ(t.on_step(kCr3A, 0x7000, 43, 3).kind, ReturnHit::Kind::kForeign);  // not a second parent return
  EXPECT_EQ(t.on_step(kCr3B, 0x7000, 0, 4).kind, ReturnHit::Kind::kChildReturn);
  EXPECT_EQ(t.pending(), 0u);
  EXPECT_EQ(t.on_step(kCr3B, 0x7000, 0, 5).kind, ReturnHit::Kind::kForeign);
}

TEST(ReturnTable, ChildNeverSeen) {
  ReturnTable t(256, 1000);
  t.on_entry(entry(kCr3A, 0x7000, 57, 1, true));
  EXPECT_EQ(t.on_step(kCr3A, 0x7000, 42, 2).kind, ReturnHit::Kind::kReturn);
  t.on_entry(entry(kCr3A, 0x7000, 57, 3, true));  // the next fork: the first child was not seen
  EXPECT_EQ(t.stats().child_unseen, 1u);
  EXPECT_EQ(t.stats().missed, 0u);
}

TEST(ReturnTable, VforkChildInTheParentsAddressSpace) {
  ReturnTable t;
  t.on_entry(entry(kCr3A, 0x7000, 58, 1, true));
  EXPECT_EQ(t.on_step(kCr3A, 0x7000, 0, 2).kind, ReturnHit::Kind::kChildReturn);
  EXPECT_EQ(t.on_step(kCr3A, 0x7000, 99, 3).kind, ReturnHit::Kind::kReturn);
}

TEST(ReturnTable, CountsMissedExpiredAndAbandoned) {
  ReturnTable t(256, 1000);
  t.on_entry(entry(kCr3A, 0x7000, 8, 10));
  t.on_entry(entry(kCr3A, 0x7000, 8, 20));  // same thread again: the first was missed
  EXPECT_EQ(t.stats().missed, 1u);
  EXPECT_EQ(t.pending(), 1u);
  t.on_entry(entry(kCr3B, 0x5000, 59, 30));
  t.drop_cr3(kCr3B);
  EXPECT_EQ(t.stats().abandoned, 1u);
  t.expire(5000);
  EXPECT_EQ(t.stats().expired, 1u);
  EXPECT_EQ(t.pending(), 0u);
}

TEST(ReturnTable, BoundedTable) {
  ReturnTable t(3);
  for (uint64_t i = 0; i < 5; ++i) t.on_entry(entry(kCr3A, 0x7000 + i * 0x10000, 8));
  EXPECT_EQ(t.pending(), 3u);
  EXPECT_EQ(t.stats().evicted, 2u);
}

}  // namespace
}  // namespace gears::vmm::syscall_exit
