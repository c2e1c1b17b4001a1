#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "page_table_builder.h"
#include "tools/hypercall/dispatcher.h"
#include "tools/hypercall/vcpu_guest_context.h"

namespace gears::vmm::hypercall {
namespace {

using introspect::testing::PageTableBuilder;
constexpr uint64_t kUserVa = 0x0000'7f00'0000'0000ULL;
constexpr uint64_t kKernVa = 0xffff'ffff'8000'0000ULL;

class HypercallTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = std::move(*GuestMemory::create(8 << 20));
    PageTableBuilder pt(mem, 0x10000, 0x11000);
    pt.map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
    pt.map(kKernVa, 0x300000, 0x1000, PageTableBuilder::kRw);
    const char msg[] = "hello from the guest";
    (void)mem.write(0x200000, std::span(reinterpret_cast<const uint8_t*>(msg), sizeof msg));
    (void)mem.write(0x300000, std::span(reinterpret_cast<const uint8_t*>("secret"), 7));
    regs.cr3 = pt.cr3();
    regs.cr0 = VcpuRegs::kCr0Pg | VcpuRegs::kCr0Wp;
  }
  GuestMemory mem;
  VcpuRegs regs;
  HypercallDispatcher d;
};

TEST_F(HypercallTest, KernelDoorbellConvention) {
  const uint32_t nr = GEARS_HC_MAKE(0x1234, 1);
  ASSERT_TRUE(d.add(nr, [](GuestContext& ctx, const HypercallArgs& a) -> int64_t {
    EXPECT_EQ(ctx.origin(), Origin::guest_kernel);
    EXPECT_EQ(current_guest(), &ctx);
    return static_cast<int64_t>(a.regs[0] + a.regs[4]);
  }));
  EXPECT_FALSE(d.add(nr, [](GuestContext&, const HypercallArgs&) -> int64_t { return 0; }));
  regs.rax = nr;
  regs.rdi = 40, regs.r9 = 2;
  regs.rdx = GEARS_DOORBELL_PORT;  // the port of `out dx, eax`, never an argument
  auto r = d.dispatch(Origin::guest_kernel, 0, regs, mem);
  EXPECT_TRUE(r.handled);
  EXPECT_FALSE(r.finish_as_sysret);
  EXPECT_EQ(regs.rax, 42u);
  EXPECT_EQ(current_guest(), nullptr);
}

TEST_F(HypercallTest, UserSyscallConventionAndUnknownNumbers) {
  const uint32_t nr = GEARS_HC_MAKE(7, 2);
  ASSERT_TRUE(d.add(nr, [](GuestContext&, const HypercallArgs& a) -> int64_t {
    return static_cast<int64_t>(a.regs[0] * 10 + a.regs[4]);
  }));
  regs.rax = GEARS_SYSCALL_NR;
  regs.rdi = nr;
  regs.rsi = 4, regs.r9 = 2;
  auto r = d.dispatch(Origin::guest_user, 1, regs, mem);
  EXPECT_TRUE(r.finish_as_sysret);
  EXPECT_EQ(regs.rax, 42u);
  regs.rdi = 0xFFFF'FFFF'0000'0000ULL | nr;  // not a 32-bit number: unknown, not truncated
  r = d.dispatch(Origin::guest_user, 1, regs, mem);
  EXPECT_FALSE(r.handled);
  EXPECT_EQ(static_cast<int64_t>(regs.rax), -ENOSYS);
  EXPECT_EQ(d.unknown(), 1u);
  d.remove_service(7);
  regs.rdi = nr;
  EXPECT_FALSE(d.dispatch(Origin::guest_user, 1, regs, mem).handled);
}

TEST_F(HypercallTest, UserCallsCannotReadKernelMemory) {
  const uint32_t nr = GEARS_HC_MAKE(1, 1);
  std::string got, err;
  ASSERT_TRUE(d.add(nr, [&](GuestContext& ctx, const HypercallArgs& a) -> int64_t {
    auto s = ctx.read_string(a.regs[0], 64);
    if (!s) {
      err = s.error().message;
      return -EFAULT;
    }
    got = *s;
    return 0;
  }));
  regs.rax = GEARS_SYSCALL_NR;
  regs.rdi = nr;
  regs.rsi = kUserVa;
  d.dispatch(Origin::guest_user, 0, regs, mem);
  EXPECT_EQ(got, "hello from the guest");
  regs.rax = GEARS_SYSCALL_NR;
  regs.rsi = kKernVa;
  d.dispatch(Origin::guest_user, 0, regs, mem);
  EXPECT_EQ(static_cast<int64_t>(regs.rax), -EFAULT);
  EXPECT_NE(err.find("a kernel page, user access"), std::string::npos) << err;
  // The same address from the kernel doorbell is allowed.
  regs.rax = nr;
  regs.rdi = kKernVa;
  d.dispatch(Origin::guest_kernel, 0, regs, mem);
  EXPECT_EQ(got, "secret");
}

TEST_F(HypercallTest, ContextRegistersAndWrites) {
  VcpuGuestContext ctx(mem, regs, 3, Origin::guest_user);
  ctx.set_reg(Reg::r10, 99);
  EXPECT_EQ(regs.r10, 99u);
  EXPECT_EQ(ctx.reg(Reg::r10), 99u);
  EXPECT_EQ(ctx.vcpu(), 3);
  ASSERT_TRUE(ctx.write(kUserVa + 8, "XY", 2));
  char buf[4] = {};
  ASSERT_TRUE(ctx.read(kUserVa + 6, buf, 4));
  EXPECT_EQ(std::string(buf, 4), "frXY");
  EXPECT_FALSE(ctx.write(kKernVa, "no", 2));
}

TEST_F(HypercallTest, HandlerExceptionsBecomeEio) {
  ASSERT_TRUE(d.add(5, [](GuestContext&, const HypercallArgs&) -> int64_t { throw std::runtime_error("boom"); }));
  regs.rax = 5;
  d.dispatch(Origin::guest_kernel, 0, regs, mem);
  EXPECT_EQ(static_cast<int64_t>(regs.rax), -EIO);
  EXPECT_EQ(current_guest(), nullptr);
}

}  // namespace
}  // namespace gears::vmm::hypercall
