// The borrow engine against a simulated guest thread: a tiny "kernel" that executes the
// syscall the registers ask for at each stub entry, returns to user mode at RCX, and follows
// the trampoline's code paths (call -> report, syscall return -> report, re-executed SYSCALL).
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <map>

#include "core/guest_memory.h"
#include "page_table_builder.h"
#include "tools/inject/borrow_engine.h"

namespace gears::vmm::inject {
namespace {

using introspect::testing::PageTableBuilder;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kScratchVa = 0x0000'7f00'0000'0000ULL;  // where the fake mmap maps
constexpr uint64_t kUserRip = 0x401002;                     // after the thread's SYSCALL
constexpr uint64_t kUserRsp = 0x7ffd'0000'1000ULL;

struct FakeXstate : ExtendedState {
  std::vector<uint8_t> live = std::vector<uint8_t>(64, 0xAA);
  int restores = 0;
  Expected<std::vector<uint8_t>> save() override { return live; }
  Expected<void> restore(const std::vector<uint8_t>& s) override {
    live = s;
    ++restores;
    return {};
  }
};

// Records what the chain saw.
struct RecordingJob : Job {
  std::function<Chain(ChainContext&)> make;
  bool taken = false;
  std::optional<ChainResult> result;
  std::optional<Chain> offer(const Candidate&, ChainContext& cx) override {
    if (taken) return std::nullopt;
    taken = true;
    return make(cx);
  }
  void finished(const Candidate&, const ChainResult& r) override { result = r; }
  bool satisfied() const override { return taken; }
};

class BorrowEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(16 * kMiB);
    ASSERT_TRUE(m) << m.error().what();
    mem = std::move(*m);
    pt.emplace(mem, 0x10000, 0x11000);
    // The scratch area the fake mmap hands out: one 2 MiB page, user RWX.
    pt->map(kScratchVa, 0x200000, 2 * kMiB, PageTableBuilder::kRw | PageTableBuilder::kUser);
  }

  // The thread at its SYSCALL entry (nanosleep, say) as the stub shows it.
  VcpuRegs thread_at_entry() const {
    VcpuRegs r;
    r.cr3 = pt->cr3();
    r.rax = 35;
    r.rdi = 0x1111;
    r.rsi = 0x2222;
    r.rbx = 0xB0B0;
    r.r12 = 0x1212;
    r.rcx = kUserRip;
    r.r11 = 0x246;
    r.rsp = kUserRsp;
    r.cpl = 0;
    return r;
  }

  // The simulated kernel: runs the call in `r` and comes back to user mode, then simulates
  // user code until the next SYSCALL; returns the registers of that next stub entry, or
  // nullopt when the thread's own syscall ran (the borrow is over).
  std::optional<VcpuRegs> kernel_and_user(VcpuRegs r, const VcpuRegs& original) {
    syscalls.push_back(r.rax);
    int64_t ret = 0;
    switch (r.rax) {
      case kSysMmap: ret = static_cast<int64_t>(kScratchVa); mapped_len = r.rsi; break;
      case kSysMunmap: ret = 0; unmapped = true; break;
      case kSysGetpid: ret = 77; break;
      default:
        if (r.rax == original.rax && r.rcx == original.rcx && r.rsp == original.rsp) {
          // The thread's own syscall with its own registers: the borrow gave it back.
          final_regs = r;
          return std::nullopt;
        }
        ret = fake_syscall(r);
    }
    // SYSRET to RCX with RAX = ret.
    const uint64_t rip = r.rcx;
    VcpuRegs next = r;
    next.rax = static_cast<uint64_t>(ret);
    if (rip == original.rcx - 2) {  // the thread's own SYSCALL, executed again
      next.rcx = original.rcx;
      return next;
    }
    if (rip == kScratchVa) {  // trampoline call entry: check the code, "call" the function
      std::vector<uint8_t> code(80);
      EXPECT_TRUE(mem.read(0x200000, code));
      uint64_t fn = 0, arg3 = 0;
      std::memcpy(&fn, &code[64], 8);
      std::memcpy(&arg3, &code[72], 8);
      EXPECT_EQ(code, trampoline_code(fn, arg3));
      EXPECT_EQ(r.rsp % 16, 0u);
      calls.push_back({fn, r.rdi, r.rsi, r.rdx, arg3});
      next.rsi = fn == 0xF00D ? 4242 : 1;
      next.rax = GEARS_SYSCALL_NR;
      next.rdi = kInjectDoneHc;
      next.rcx = kScratchVa + 28;
      return next;
    }
    if (rip == kScratchVa + 32) {  // trampoline syscall return: report RAX
      std::vector<uint8_t> code(80);
      EXPECT_TRUE(mem.read(0x200000, code));
      const auto want = trampoline_code(0, 0);
      EXPECT_TRUE(std::equal(code.begin() + 30, code.begin() + 50, want.begin() + 30))
          << "no SYSCALL + report code at the syscall return point";
      next.rsi = static_cast<uint64_t>(ret);
      next.rax = GEARS_SYSCALL_NR;
      next.rdi = kInjectDoneHc;
      next.rcx = kScratchVa + 47;
      return next;
    }
    ADD_FAILURE() << "the thread returned to an unexpected RIP " << std::hex << rip;
    return std::nullopt;
  }
  int64_t fake_syscall(const VcpuRegs& r) {
    if (r.rax == 1) return static_cast<int64_t>(r.rdx);  // write: all bytes
    return -ENOSYS;
  }

  // Drives one borrow from the thread's entry to its end; false if the engine never let go.
  bool drive(BorrowEngine& e, FakeXstate& xs) {
    const VcpuRegs original = thread_at_entry();
    VcpuRegs r = original;
    for (int i = 0; i < 100; ++i) {
      const bool owned = e.on_entry(0, r, mem, xs) != BorrowEngine::Entry::not_mine;
      if (!owned && i == 0) return false;
      auto next = kernel_and_user(r, original);
      if (!next) return true;
      r = *next;
    }
    return false;
  }

  struct CallSeen {
    uint64_t fn, a0, a1, a2, a3;
  };
  GuestMemory mem;
  std::optional<PageTableBuilder> pt;
  std::vector<uint64_t> syscalls;
  std::vector<CallSeen> calls;
  uint64_t mapped_len = 0;
  bool unmapped = false;
  VcpuRegs final_regs;
};

Chain getpid_only(ChainContext& cx) {
  int64_t pid = co_await cx.syscall(kSysGetpid);
  co_return pid;
}

TEST_F(BorrowEngineTest, SyscallWithoutScratchGivesTheThreadBackIntact) {
  std::vector<bool> flags;
  BorrowEngine e([&](bool on) { flags.push_back(on); });
  auto job = std::make_shared<RecordingJob>();
  job->make = getpid_only;
  e.submit(job);
  FakeXstate xs;
  ASSERT_TRUE(drive(e, xs));
  ASSERT_TRUE(job->result && *job->result) << (job->result ? job->result->error().what() : "no result");
  EXPECT_EQ(**job->result, 77);
  EXPECT_EQ(syscalls, (std::vector<uint64_t>{kSysGetpid, 35}));
  const VcpuRegs o = thread_at_entry();
  EXPECT_EQ(final_regs.rdi, o.rdi);
  EXPECT_EQ(final_regs.rbx, o.rbx);
  EXPECT_EQ(final_regs.r11, o.r11);
  EXPECT_EQ(xs.restores, 1);
  EXPECT_EQ(flags, (std::vector<bool>{true, false}));  // exit-all on while busy, then off
  EXPECT_FALSE(e.busy());
}

Chain write_and_call(ChainContext& cx) {
  int64_t area = co_await cx.scratch(100);
  if (area < 0) co_return fail("no scratch");
  GEARS_CO_TRY_VOID(cx.write_string(static_cast<uint64_t>(area), "hello"));
  auto back = cx.read_string(static_cast<uint64_t>(area), 16);
  if (!back || *back != "hello") co_return fail("scratch memory does not read back");
  int64_t w = co_await cx.syscall(1, 1, area, 5);
  if (w != 5) co_return fail("write returned " + std::to_string(w));
  int64_t r = co_await cx.call(0xF00D, area, 2, 3, 4);
  co_return r;
}

TEST_F(BorrowEngineTest, ScratchSyscallAndCallThenUnmapAndRestore) {
  BorrowEngine e(nullptr);
  auto job = std::make_shared<RecordingJob>();
  job->make = write_and_call;
  e.submit(job);
  FakeXstate xs;
  const bool driven = drive(e, xs);
  std::string seen;
  for (auto n : syscalls) seen += std::to_string(n) + " ";
  ASSERT_TRUE(driven) << "syscalls: " << seen;
  ASSERT_TRUE(job->result && *job->result) << job->result->error().what();
  EXPECT_EQ(**job->result, 4242);
  // mmap, write (through the trampoline), getpid (the call's way into user mode), munmap,
  // then the thread's own call.
  EXPECT_EQ(syscalls, (std::vector<uint64_t>{kSysMmap, 1, kSysGetpid, kSysMunmap, 35}));
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].fn, 0xF00Du);
  EXPECT_EQ(calls[0].a0, kScratchVa + BorrowEngine::kTrampolinePage);
  EXPECT_EQ(calls[0].a3, 4u);
  EXPECT_TRUE(unmapped);
  EXPECT_GE(mapped_len, BorrowEngine::kTrampolinePage + 100 + ChainContext::kStackBytes);
  EXPECT_EQ(final_regs.rsp, kUserRsp);
  EXPECT_EQ(final_regs.r12, 0x1212u);
}

TEST_F(BorrowEngineTest, OtherThreadsPassWhileAThreadIsBorrowed) {
  BorrowEngine e(nullptr);
  auto job = std::make_shared<RecordingJob>();
  job->make = write_and_call;
  e.submit(job);
  FakeXstate xs;
  VcpuRegs r = thread_at_entry();
  ASSERT_EQ(e.on_entry(0, r, mem, xs), BorrowEngine::Entry::owned);  // borrowed: now asking for mmap
  EXPECT_EQ(r.rax, kSysMmap);
  VcpuRegs other = thread_at_entry();
  other.rsp = kUserRsp - 0x10000;  // another thread of the same process
  EXPECT_EQ(e.on_entry(1, other, mem, xs), BorrowEngine::Entry::not_mine);
  EXPECT_EQ(other.rax, 35u);
}

TEST_F(BorrowEngineTest, GearsHypercallsAreNeverBorrowed) {
  BorrowEngine e(nullptr);
  auto job = std::make_shared<RecordingJob>();
  job->make = getpid_only;
  e.submit(job);
  FakeXstate xs;
  VcpuRegs r = thread_at_entry();
  r.rax = GEARS_SYSCALL_NR;
  EXPECT_EQ(e.on_entry(0, r, mem, xs), BorrowEngine::Entry::not_mine);
  EXPECT_FALSE(job->taken);
}

TEST_F(BorrowEngineTest, CancelForgetsALostBorrow) {
  BorrowEngine e(nullptr);
  auto job = std::make_shared<RecordingJob>();
  job->make = write_and_call;
  e.submit(job);
  FakeXstate xs;
  VcpuRegs r = thread_at_entry();
  ASSERT_EQ(e.on_entry(0, r, mem, xs), BorrowEngine::Entry::owned);
  e.cancel(job, std::chrono::milliseconds(0));
  ASSERT_TRUE(job->result);
  EXPECT_FALSE(*job->result);
  EXPECT_FALSE(e.busy());
  EXPECT_EQ(e.stats().lost, 1u);
}

TEST_F(BorrowEngineTest, FailedMmapEndsTheChainWithItsError) {
  BorrowEngine e(nullptr);
  auto job = std::make_shared<RecordingJob>();
  job->make = write_and_call;
  e.submit(job);
  FakeXstate xs;
  VcpuRegs r = thread_at_entry();
  ASSERT_EQ(e.on_entry(0, r, mem, xs), BorrowEngine::Entry::owned);
  ASSERT_EQ(r.rax, kSysMmap);
  // The thread re-executes its SYSCALL with RAX = -ENOMEM.
  r.rax = static_cast<uint64_t>(-ENOMEM);
  r.rcx = kUserRip;
  r.rsp = kUserRsp;
  EXPECT_EQ(e.on_entry(0, r, mem, xs), BorrowEngine::Entry::given_back);
  EXPECT_EQ(r.rax, 35u);  // given back at once: no scratch to unmap
  EXPECT_EQ(r.rcx, kUserRip);
  ASSERT_TRUE(job->result);
  EXPECT_FALSE(*job->result);
}

}  // namespace
}  // namespace gears::vmm::inject
