// The execve tool's argument edits, and both arrays rewritten in one call (exec_arrays.h layout).
#include <gtest/gtest.h>

#include <algorithm>

#include "execve_fixture.h"
#include "tools/execve/argv_inject.h"
#include "tools/execve/exec_inject.h"

namespace gears::vmm::execve {
namespace {

using introspect::AddressSpace;
using introspect::testing::PageTableBuilder;
using test::kData;
using test::kStack;
using Op = ArgvEdit::Op;
using Strings = std::vector<std::string>;

// ---------------------------------------------------------------------------------------------
// apply_argv_edits

TEST(ArgvEdits, EachOperation) {
  const Strings argv{"cc", "-O2", "x.c", "-O2"};
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kAppend, "-g", {}}}), (Strings{"cc", "-O2", "x.c", "-O2", "-g"}));
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kInsertFirst, "-g", {}}}), (Strings{"cc", "-g", "-O2", "x.c", "-O2"}));
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kReplace, "-O2", "-O0"}}), (Strings{"cc", "-O0", "x.c", "-O0"}));
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kRemove, "-O2", {}}}), (Strings{"cc", "x.c"}));
}

TEST(ArgvEdits, AppliedInOrder) {
  const Strings argv{"cc", "x.c"};
  // Append then remove the same argument: gone; remove then append: there.
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kAppend, "-g", {}}, {Op::kRemove, "-g", {}}}), (Strings{"cc", "x.c"}));
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kRemove, "-g", {}}, {Op::kAppend, "-g", {}}}), (Strings{"cc", "x.c", "-g"}));
  // A replacement sees what an earlier insert added; two inserts: the later one comes first.
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kInsertFirst, "a", {}}, {Op::kInsertFirst, "b", {}}, {Op::kReplace, "a", "c"}}),
            (Strings{"cc", "b", "c", "x.c"}));
}

TEST(ArgvEdits, NoMatchAndArgv0) {
  const Strings argv{"rm", "-f", "x"};
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kRemove, "-r", {}}, {Op::kReplace, "-i", "-f"}}), argv);
  // argv[0] is the program's name for itself: never replaced or removed.
  EXPECT_EQ(apply_argv_edits(argv, {{Op::kRemove, "rm", {}}, {Op::kReplace, "rm", "echo"}}), argv);
  // An empty argv gets an empty argv[0] first, so an added argument is an argument.
  EXPECT_EQ(apply_argv_edits({}, {{Op::kAppend, "x", {}}}), (Strings{"", "x"}));
  EXPECT_EQ(apply_argv_edits({}, {{Op::kInsertFirst, "x", {}}}), (Strings{"", "x"}));
  EXPECT_EQ(apply_argv_edits({}, {{Op::kRemove, "x", {}}}), Strings{});
  // Empty arguments are arguments like any other.
  EXPECT_EQ(apply_argv_edits({"a", "", "b"}, {{Op::kRemove, "", {}}}), (Strings{"a", "b"}));
}

// ---------------------------------------------------------------------------------------------
// inject_argv / inject_exec in a fake address space

using ArgvInjectTest = test::ExecveFixture;

TEST_F(ArgvInjectTest, RewritesArgvBelowTheRedZoneAndRepointsRsi) {
  AddressSpace as(mem, cr3);
  const VcpuRegs before = regs;
  auto r = inject_argv(as, regs, {{Op::kInsertFirst, "--color", {}}, {Op::kReplace, "-l", "-la"}, {Op::kAppend, "/", {}}});
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(regs.rsi, *r);
  EXPECT_EQ(*r % 16, 0u);
  EXPECT_LT(*r, regs.rsp - kRedZone);
  EXPECT_EQ(*as.read_string_array(regs.rsi, {}), (Strings{"ls", "--color", "-la", "/"}));
  EXPECT_EQ(*as.read_obj<uint64_t>(regs.rsi), kData + 0x10);  // argv[0] kept its string
  EXPECT_EQ(regs.rdx, before.rdx);                            // envp untouched
  EXPECT_EQ(regs.rdi, before.rdi);
  EXPECT_EQ(*as.read_string_array(kData + 0x100, {}), (Strings{"ls", "-l"}));  // the caller's array too
  expect_red_zone_untouched(as);
}

TEST_F(ArgvInjectTest, ExecveatUsesRdx) {
  regs.rax = 322, regs.rdi = static_cast<uint64_t>(-100), regs.rsi = kData, regs.rdx = kData + 0x100,
  regs.r10 = kData + 0x200;
  AddressSpace as(mem, cr3);
  ASSERT_TRUE(inject_argv(as, regs, {{Op::kAppend, "x", {}}}));
  EXPECT_EQ(*as.read_string_array(regs.rdx, {}), (Strings{"ls", "-l", "x"}));
  EXPECT_EQ(regs.r10, kData + 0x200);
}

TEST_F(ArgvInjectTest, NullArgvAndNothingToChange) {
  AddressSpace as(mem, cr3);
  const VcpuRegs before = regs;
  // No argument matches: the call is left exactly as it was.
  auto same = inject_exec(as, regs, {{}, {{Op::kRemove, "-r", {}}}});
  ASSERT_TRUE(same);
  EXPECT_FALSE(same->argv_rewritten);
  EXPECT_EQ(same->argv, before.rsi);
  EXPECT_EQ(regs.rsi, before.rsi);
  regs.rsi = 0;
  ASSERT_TRUE(inject_argv(as, regs, {{Op::kAppend, "x", {}}}));
  EXPECT_EQ(*as.read_string_array(regs.rsi, {}), (Strings{"", "x"}));
}

// The layout of both arrays: every byte written lies below RSP - red zone, within
// max_stack_use, and the two arrays (pointers and copied strings) do not overlap.
TEST_F(ArgvInjectTest, BothArraysOneBelowTheOther) {
  AddressSpace as(mem, cr3);
  ExecEdits edits;
  edits.env = {{"LD_PRELOAD", "/gears/libsvc.so", EnvEdit::Mode::kPrepend}, {"GEARS", "1"}};
  edits.argv = {{Op::kAppend, "--gears", {}}, {Op::kReplace, "-l", "-1"}};
  auto r = inject_exec(as, regs, edits);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_TRUE(r->env_rewritten);
  EXPECT_TRUE(r->argv_rewritten);
  EXPECT_EQ(regs.rdx, r->envp);
  EXPECT_EQ(regs.rsi, r->argv);
  EXPECT_EQ(*as.read_string_array(regs.rdx, {}),
            (Strings{"PATH=/bin", "LD_PRELOAD=/gears/libsvc.so:/old.so", "HOME=/", "GEARS=1"}));
  EXPECT_EQ(*as.read_string_array(regs.rsi, {}), (Strings{"ls", "-1", "--gears"}));
  EXPECT_EQ(r->envp % 16, 0u);
  EXPECT_EQ(r->argv % 16, 0u);

  // Collect [start, end) of everything in the stack page: both arrays and their new strings.
  struct Range {
    uint64_t lo, hi;
    const char* what;
  };
  std::vector<Range> ranges;
  auto add_array = [&](uint64_t at, const char* what) {
    auto ptrs = as.read_pointer_array(at, 100);
    ASSERT_TRUE(ptrs);
    ranges.push_back({at, at + (ptrs->size() + 1) * 8, what});
    for (uint64_t p : *ptrs) {
      if (p < kStack) continue;  // an original string in the caller's data
      ranges.push_back({p, p + as.read_string(p, 100)->size() + 1, what});
    }
  };
  add_array(r->envp, "envp");
  add_array(r->argv, "argv");
  const uint64_t top = regs.rsp - kRedZone;
  uint64_t lowest_env = top, highest_argv = 0;
  for (const auto& x : ranges) {
    EXPECT_GE(x.lo, kStack) << x.what;
    EXPECT_LE(x.hi, top) << x.what;
    EXPECT_LE(top - x.lo, ExecveLimits{}.max_stack_use) << x.what;
    if (std::string_view(x.what) == "envp") lowest_env = std::min(lowest_env, x.lo);
    else highest_argv = std::max(highest_argv, x.hi);
  }
  EXPECT_LE(highest_argv, lowest_env) << "argv is written below envp";
  for (size_t i = 0; i < ranges.size(); ++i)
    for (size_t j = i + 1; j < ranges.size(); ++j)
      EXPECT_TRUE(ranges[i].hi <= ranges[j].lo || ranges[j].hi <= ranges[i].lo)
          << ranges[i].what << " [" << ranges[i].lo << "," << ranges[i].hi << ") overlaps " << ranges[j].what;
  // Only the new strings were copied: unchanged entries point at the caller's strings.
  EXPECT_EQ(*as.read_obj<uint64_t>(r->envp), kData + 0x20);
  EXPECT_EQ(*as.read_obj<uint64_t>(r->argv), kData + 0x10);
  expect_red_zone_untouched(as);
}

TEST_F(ArgvInjectTest, ExecveatBothArrays) {
  regs.rax = 322, regs.rdi = static_cast<uint64_t>(-100), regs.rsi = kData, regs.rdx = kData + 0x100,
  regs.r10 = kData + 0x200;
  AddressSpace as(mem, cr3);
  auto r = inject_exec(as, regs, {{{"GEARS", "1"}}, {{Op::kRemove, "-l", {}}}});
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(regs.r10, r->envp);
  EXPECT_EQ(regs.rdx, r->argv);
  EXPECT_EQ(regs.rsi, kData);
  EXPECT_EQ(*as.read_string_array(regs.rdx, {}), (Strings{"ls"}));
  EXPECT_EQ(as.read_string_array(regs.r10, {})->back(), "GEARS=1");
}

// The second array does not fit: neither register changes (the first array was written below
// the stack already: dead memory).
TEST_F(ArgvInjectTest, SecondArrayFailingLeavesBothRegistersAlone) {
  AddressSpace as(mem, cr3);
  regs.rsp = kStack + 0x400;  // envp's ~100 bytes fit in the stack page, a 2 KiB argument does not
  const VcpuRegs before = regs;
  auto r = inject_exec(as, regs, {{{"GEARS", "1"}}, {{Op::kAppend, std::string(2000, 'a'), {}}}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not mapped"), std::string::npos) << r.error().message;
  EXPECT_EQ(regs.rdx, before.rdx);
  EXPECT_EQ(regs.rsi, before.rsi);
  // The same with the stack budget: envp alone fits in 256 bytes, envp + argv do not.
  regs.rsp = kStack + 0x1F00;
  ExecveLimits tight;
  tight.max_stack_use = 256;
  ASSERT_TRUE(inject_exec(as, regs, {{{"GEARS", "1"}}, {}}, tight));
  regs = before;
  regs.rsp = kStack + 0x1F00;
  auto t = inject_exec(as, regs, {{{"GEARS", "1"}}, {{Op::kAppend, std::string(200, 'a'), {}}}}, tight);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("more than 256"), std::string::npos) << t.error().message;
  EXPECT_EQ(regs.rdx, before.rdx);
  EXPECT_EQ(regs.rsi, before.rsi);
}

TEST_F(ArgvInjectTest, NewArrayLimits) {
  AddressSpace as(mem, cr3);
  const VcpuRegs before = regs;
  ExecveLimits lim;
  lim.strings.max_count = 3;
  auto n = inject_argv(as, regs, {{Op::kAppend, "a", {}}, {Op::kAppend, "b", {}}}, lim);
  ASSERT_FALSE(n);
  EXPECT_NE(n.error().message.find("4 strings, more than 3"), std::string::npos) << n.error().message;
  lim = {};
  lim.strings.max_string = 8;
  auto s = inject_argv(as, regs, {{Op::kAppend, "123456789", {}}}, lim);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("more than 8"), std::string::npos) << s.error().message;
  lim = {};
  lim.strings.max_total = 16;
  auto t = inject_argv(as, regs, {{Op::kAppend, "12345678", {}}}, lim);  // 3 + 3 + 9 = 15: fits
  ASSERT_TRUE(t) << t.error().what();
  regs = before;
  auto u = inject_argv(as, regs, {{Op::kAppend, "1234567890", {}}}, lim);  // 17
  ASSERT_FALSE(u);
  EXPECT_NE(u.error().message.find("more than 16"), std::string::npos) << u.error().message;
  EXPECT_EQ(regs.rsi, before.rsi);
}

TEST_F(ArgvInjectTest, UnwritableStackAndBadPointersAreRefused) {
  // A "stack" the user could not write.
  PageTableBuilder pt(mem, 0x20000, 0x21000);
  pt.map(kData, 0x200000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  pt.map(kStack + 0x1000, 0x301000, 0x1000, PageTableBuilder::kRw);  // no U/S
  AddressSpace kernel_stack(mem, pt.cr3());
  EXPECT_FALSE(inject_argv(kernel_stack, regs, {{Op::kAppend, "x", {}}}));
  // An argv pointing nowhere: refused, nothing changed (the kernel answers -EFAULT itself).
  AddressSpace as(mem, cr3);
  regs.rsi = 0x1234000;
  const VcpuRegs before = regs;
  EXPECT_FALSE(inject_argv(as, regs, {{Op::kAppend, "x", {}}}));
  EXPECT_EQ(regs.rsi, before.rsi);
  regs.rsp = 0x40;
  regs.rsi = kData + 0x100;
  EXPECT_FALSE(inject_argv(as, regs, {{Op::kAppend, "x", {}}}));
  regs.rax = 1;
  EXPECT_FALSE(inject_argv(as, regs, {{Op::kAppend, "x", {}}}));
}

}  // namespace
}  // namespace gears::vmm::execve
