#include <gtest/gtest.h>

#include "execve_fixture.h"
#include "tools/execve/env_inject.h"

namespace gears::vmm::execve {
namespace {

using introspect::AddressSpace;
using introspect::testing::PageTableBuilder;
using test::kData;
using test::kStack;
using EnvInjectTest = test::ExecveFixture;

TEST_F(EnvInjectTest, ReadsTheCall) {
  AddressSpace as(mem, cr3);
  auto c = read_execve(as, regs);
  ASSERT_TRUE(c) << c.error().what();
  EXPECT_EQ(c->filename, "/bin/ls");
  EXPECT_EQ(c->argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(c->envp.size(), 3u);
  // execveat: dirfd, filename, argv, envp in RDI RSI RDX R10.
  VcpuRegs at = regs;
  at.rax = 322, at.rdi = static_cast<uint64_t>(-100), at.rsi = kData, at.rdx = 0, at.r10 = kData + 0x200;
  auto c2 = read_execve(as, at);
  ASSERT_TRUE(c2);
  EXPECT_TRUE(c2->argv.empty());
  EXPECT_EQ(c2->envp.size(), 3u);
  regs.rax = 1;
  EXPECT_FALSE(read_execve(as, regs));
}

TEST(EnvEdits, SetAndPrepend) {
  std::vector<std::string> env{"A=1", "LD_PRELOAD=/old.so", "A=2"};
  auto out = apply_env_edits(env, {{"LD_PRELOAD", "/gears.so", EnvEdit::Mode::kPrepend},
                                   {"A", "x", EnvEdit::Mode::kSet},
                                   {"NEW", "v", EnvEdit::Mode::kPrepend}});
  EXPECT_EQ(out, (std::vector<std::string>{"A=x", "LD_PRELOAD=/gears.so:/old.so", "NEW=v"}));
}

TEST_F(EnvInjectTest, InjectsBelowTheRedZoneAndRepointsRdx) {
  AddressSpace as(mem, cr3);
  const uint64_t old_rdx = regs.rdx;
  auto r = inject_env(as, regs, {{"LD_PRELOAD", "/gears/libsvc.so", EnvEdit::Mode::kPrepend}, {"GEARS", "1"}});
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(regs.rdx, *r);
  EXPECT_NE(regs.rdx, old_rdx);
  EXPECT_EQ(*r % 16, 0u);
  EXPECT_LT(*r, regs.rsp - 128);
  auto env = as.read_string_array(regs.rdx, {});
  ASSERT_TRUE(env);
  EXPECT_EQ(*env, (std::vector<std::string>{"PATH=/bin", "LD_PRELOAD=/gears/libsvc.so:/old.so", "HOME=/", "GEARS=1"}));
  // Unchanged entries keep their original strings; the caller's memory is untouched.
  auto first = as.read_obj<uint64_t>(regs.rdx);
  EXPECT_EQ(*first, kData + 0x20);
  EXPECT_EQ(*as.read_string(kData + 0x30, 100), "LD_PRELOAD=/old.so");
  // The red zone below RSP is untouched.
  for (uint64_t a = regs.rsp - 128; a < regs.rsp; ++a) EXPECT_EQ(*as.read_obj<uint8_t>(a), 0xAA) << a;
}

TEST_F(EnvInjectTest, NullEnvpGetsOnlyTheNewVariables) {
  regs.rdx = 0;
  AddressSpace as(mem, cr3);
  ASSERT_TRUE(inject_env(as, regs, {{"GEARS", "1"}}));
  EXPECT_EQ(*as.read_string_array(regs.rdx, {}), (std::vector<std::string>{"GEARS=1"}));
}

TEST_F(EnvInjectTest, NoRoomLeavesRegistersAlone) {
  AddressSpace as(mem, cr3);
  regs.rsp = kStack + 0x100;  // the page below the stack is unmapped (a guard page)
  const VcpuRegs before = regs;
  auto r = inject_env(as, regs, {{"BIG", std::string(1000, 'x')}});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not mapped"), std::string::npos) << r.error().message;
  EXPECT_EQ(regs.rdx, before.rdx);
  ExecveLimits tight;
  tight.max_stack_use = 64;
  regs.rsp = kStack + 0x1F00;
  auto t = inject_env(as, regs, {{"BIG", std::string(1000, 'x')}}, tight);
  ASSERT_FALSE(t);
  EXPECT_NE(t.error().message.find("more than 64"), std::string::npos);
  regs.rsp = 0x40;  // absurd stack pointer
  EXPECT_FALSE(inject_env(as, regs, {{"A", "b"}}));
}

TEST_F(EnvInjectTest, KernelOnlyStackIsRefused) {
  // A "stack" the user could not write: the injection must not write there on its behalf.
  PageTableBuilder pt(mem, 0x20000, 0x21000);
  pt.map(kData, 0x200000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  pt.map(kStack + 0x1000, 0x301000, 0x1000, PageTableBuilder::kRw);  // no U/S
  AddressSpace as(mem, pt.cr3());
  EXPECT_FALSE(inject_env(as, regs, {{"A", "b"}}));
}

}  // namespace
}  // namespace gears::vmm::execve
