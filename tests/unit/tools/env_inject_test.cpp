#include <gtest/gtest.h>

#include <cstring>

#include "page_table_builder.h"
#include "tools/execve/env_inject.h"

namespace gears::vmm::execve {
namespace {

using introspect::AddressSpace;
using introspect::testing::PageTableBuilder;
constexpr uint64_t kData = 0x0000'0000'0040'0000ULL;   // filename, argv, envp
constexpr uint64_t kStack = 0x0000'7fff'f000'0000ULL;  // 2 pages of user stack: [kStack, kStack+0x2000)

class EnvInjectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = std::move(*GuestMemory::create(8 << 20));
    PageTableBuilder pt(mem, 0x10000, 0x11000);
    const uint64_t rw = PageTableBuilder::kRw | PageTableBuilder::kUser;
    pt.map(kData, 0x200000, 0x1000, rw);
    pt.map(kStack, 0x300000, 0x1000, rw);
    pt.map(kStack + 0x1000, 0x301000, 0x1000, rw);
    cr3 = pt.cr3();
    // "/bin/ls" at +0, argv {"ls","-l"}, envp {"PATH=/bin","LD_PRELOAD=/old.so","HOME=/"}.
    put(0x000, "/bin/ls");
    put(0x010, "ls");
    put(0x018, "-l");
    put(0x020, "PATH=/bin");
    put(0x030, "LD_PRELOAD=/old.so");
    put(0x050, "HOME=/");
    uint64_t argv[] = {kData + 0x10, kData + 0x18, 0};
    uint64_t envp[] = {kData + 0x20, kData + 0x30, kData + 0x50, 0};
    ASSERT_TRUE(mem.write(0x200100, std::span(reinterpret_cast<const uint8_t*>(argv), sizeof argv)));
    ASSERT_TRUE(mem.write(0x200200, std::span(reinterpret_cast<const uint8_t*>(envp), sizeof envp)));
    regs.rax = 59;
    regs.rdi = kData, regs.rsi = kData + 0x100, regs.rdx = kData + 0x200;
    regs.rsp = kStack + 0x1F00;
    ASSERT_TRUE(mem.fill(0x300000, 0xAA, 0x2000));
  }
  void put(uint64_t off, const char* s) {
    ASSERT_TRUE(mem.write(0x200000 + off, std::span(reinterpret_cast<const uint8_t*>(s), std::strlen(s) + 1)));
  }
  GuestMemory mem;
  uint64_t cr3 = 0;
  VcpuRegs regs;
};

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
