// The KVM-free parts of host-vmm/hooks: option parsing, PTI prediction, built-in hypercalls.
#include <gtest/gtest.h>

#include <cerrno>

#include "hooks/builtin_hypercalls.h"
#include "hooks/options.h"
#include "hooks/syscall_hook.h"

namespace gears::vmm::hooks {
namespace {

TEST(GearsOptionsTest, TakesItsOwnOptionsAndLeavesTheRest) {
  std::vector<std::string> args{"--kernel", "k", "--track-processes", "--intercept", "39,0x3b",
                                "--control-socket", "/tmp/x.sock", "--inject-env", "*/app:LD_PRELOAD+=/lib/x.so",
                                "--cpus", "2", "--no-syscall-exit"};
  auto o = take_gears_options(args);
  ASSERT_TRUE(o) << o.error().what();
  EXPECT_EQ(args, (std::vector<std::string>{"--kernel", "k", "--cpus", "2"}));
  EXPECT_TRUE(o->track_processes);
  EXPECT_FALSE(o->syscall_exit);
  EXPECT_EQ(o->intercept, (std::vector<uint32_t>{39, 59}));
  EXPECT_EQ(o->control_socket, "/tmp/x.sock");
  ASSERT_EQ(o->inject_env.size(), 1u);
  EXPECT_EQ(o->inject_env[0].pattern, "*/app");
  EXPECT_EQ(o->inject_env[0].edit.name, "LD_PRELOAD");
  EXPECT_EQ(o->inject_env[0].edit.value, "/lib/x.so");
  EXPECT_EQ(o->inject_env[0].edit.mode, execve::EnvEdit::Mode::kPrepend);
}

TEST(GearsOptionsTest, RejectsBadValues) {
  for (auto bad : std::vector<std::vector<std::string>>{{"--intercept"}, {"--intercept", "x"}, {"--intercept", "-1"},
                                                        {"--inject-env", "noglob"}, {"--inject-env", "*:=v"},
                                                        {"--inject-env", ":A=b"}, {"--control-socket"}}) {
    EXPECT_FALSE(take_gears_options(bad)) << bad[0];
  }
  auto set = parse_env_rule("gears-*:GEARS_X=a=b");
  ASSERT_TRUE(set);
  EXPECT_EQ(set->edit.mode, execve::EnvEdit::Mode::kSet);
  EXPECT_EQ(set->edit.value, "a=b");
}

TEST(GuestPtiTest, FollowsVendorAndCommandLine) {
  EXPECT_FALSE(guest_pti_likely("quiet", true));
  EXPECT_TRUE(guest_pti_likely("quiet", false));
  EXPECT_FALSE(guest_pti_likely("quiet pti=off", false));
  EXPECT_FALSE(guest_pti_likely("nopti", false));
  EXPECT_FALSE(guest_pti_likely("mitigations=off quiet", false));
  EXPECT_TRUE(guest_pti_likely("pti=on", true));
  EXPECT_TRUE(guest_pti_likely("xpti=off", false));  // whole words only
}

TEST(BuiltinHypercallsTest, PingAndUnknown) {
  hypercall::HypercallDispatcher d;
  ASSERT_TRUE(register_builtin_hypercalls(d));
  EXPECT_FALSE(register_builtin_hypercalls(d));  // numbers are taken once
  auto mem = GuestMemory::create(64ULL << 20);
  ASSERT_TRUE(mem);
  VcpuRegs regs;
  regs.rdi = GEARS_HC_MAKE(0, kHcPing);
  regs.rsi = 41;
  auto r = d.dispatch(Origin::guest_user, 0, regs, *mem);
  EXPECT_TRUE(r.handled);
  EXPECT_EQ(r.result, 42);
  EXPECT_EQ(regs.rax, 42u);
  regs.rdi = GEARS_HC_MAKE(0, kHcSum);
  regs.rsi = 0x1000;
  regs.rdx = 1ULL << 40;
  EXPECT_EQ(d.dispatch(Origin::guest_user, 0, regs, *mem).result, -E2BIG);
  // No paging set up (CR3 0, CR0.PG clear): any guest pointer is a fault, never a crash.
  regs.rdi = GEARS_HC_MAKE(0, kHcSum);
  regs.rdx = 16;
  EXPECT_EQ(d.dispatch(Origin::guest_user, 0, regs, *mem).result, -EFAULT);
  regs.rdi = GEARS_HC_MAKE(0, kHcStrlen);
  EXPECT_EQ(d.dispatch(Origin::guest_user, 0, regs, *mem).result, -EFAULT);
}

}  // namespace
}  // namespace gears::vmm::hooks
