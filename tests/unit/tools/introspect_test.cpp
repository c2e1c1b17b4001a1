#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <string>

#include "core/guest_memory.h"
#include "page_table_builder.h"
#include "tools/introspect/address_space.h"
#include "tools/introspect/kvm_regs.h"
#include "tools/introspect/page_walk.h"

namespace gears::vmm::introspect {
namespace {

using testing::PageTableBuilder;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kGiB = 1ULL << 30;
constexpr uint64_t kUserVa = 0x0000'7f00'0000'0000ULL;
constexpr uint64_t kKernVa = 0xffff'ffff'8000'0000ULL;

class IntrospectTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto m = GuestMemory::create(16 * kMiB);
    ASSERT_TRUE(m) << m.error().what();
    mem = std::move(*m);
    pt.emplace(mem, 0x10000, 0x11000);
  }
  bool contains(const Error& e, const std::string& what) { return e.message.find(what) != std::string::npos; }
  GuestMemory mem;
  std::optional<PageTableBuilder> pt;
};

TEST_F(IntrospectTest, Canonical) {
  EXPECT_TRUE(is_canonical(0));
  EXPECT_TRUE(is_canonical(0x0000'7fff'ffff'ffffULL));
  EXPECT_TRUE(is_canonical(0xffff'8000'0000'0000ULL));
  EXPECT_FALSE(is_canonical(0x0000'8000'0000'0000ULL));
  EXPECT_FALSE(is_canonical(0xfff0'0000'0000'0000ULL));
}

TEST_F(IntrospectTest, Translates4KiBPage) {
  pt->map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  auto t = translate(mem, pt->cr3(), kUserVa + 0x123, Access::user_write());
  ASSERT_TRUE(t) << t.error().what();
  EXPECT_EQ(t->gpa, 0x200123u);
  EXPECT_EQ(t->page_size, 0x1000u);
  EXPECT_TRUE(t->writable);
  EXPECT_TRUE(t->user);
  EXPECT_TRUE(t->executable);
  EXPECT_EQ(t->bytes_left_in_page(), 0x1000u - 0x123);
}

TEST_F(IntrospectTest, Translates2MiBAnd1GiBPages) {
  pt->map(kKernVa, 0x400000, 2 * kMiB, PageTableBuilder::kRw | PageTableBuilder::kNx);
  auto t = translate(mem, pt->cr3(), kKernVa + 0x12345);
  ASSERT_TRUE(t) << t.error().what();
  EXPECT_EQ(t->gpa, 0x412345u);
  EXPECT_EQ(t->page_size, 2 * kMiB);
  EXPECT_FALSE(t->executable);

  pt->map(0x40000000, 0, kGiB, 0);  // 1 GiB identity, read-only, kernel
  auto g = translate(mem, pt->cr3(), 0x40000000 + 0x654321);
  ASSERT_TRUE(g) << g.error().what();
  EXPECT_EQ(g->gpa, 0x654321u);
  EXPECT_EQ(g->page_size, kGiB);
  EXPECT_FALSE(g->writable);
}

TEST_F(IntrospectTest, MasksPcidAndNoFlushBitsOfCr3) {
  pt->map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kUser);
  uint64_t cr3 = pt->cr3() | 0x5 | (1ULL << 63);
  auto t = translate(mem, cr3, kUserVa);
  ASSERT_TRUE(t) << t.error().what();
  EXPECT_EQ(t->gpa, 0x200000u);
}

TEST_F(IntrospectTest, HugePagePatBitIsNotPartOfTheFrame) {
  // Bit 12 of a 2 MiB entry is PAT, not an address bit.
  pt->map(kKernVa, 0x400000 | (1ULL << 12), 2 * kMiB, 0);
  auto t = translate(mem, pt->cr3(), kKernVa + 8);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->gpa, 0x400008u);
}

TEST_F(IntrospectTest, NamesTheMissingLevel) {
  pt->map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kUser);
  auto a = translate(mem, pt->cr3(), 0x1000);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().message, "guest address 0x1000 not mapped (PML4E not present) in CR3 0x10000");
  auto b = translate(mem, pt->cr3(), kUserVa + (1ULL << 30));
  ASSERT_FALSE(b);
  EXPECT_TRUE(contains(b.error(), "PDPTE not present"));
  auto c = translate(mem, pt->cr3(), kUserVa + (2 * kMiB));
  ASSERT_FALSE(c);
  EXPECT_TRUE(contains(c.error(), "PDE not present"));
  auto d = translate(mem, pt->cr3(), kUserVa + 0x1000);
  ASSERT_FALSE(d);
  EXPECT_TRUE(contains(d.error(), "PTE not present"));
}

TEST_F(IntrospectTest, RefusesNonCanonical) {
  auto t = translate(mem, pt->cr3(), 0x0000'8000'0000'0000ULL);
  ASSERT_FALSE(t);
  EXPECT_TRUE(contains(t.error(), "not canonical"));
}

TEST_F(IntrospectTest, PermissionChecks) {
  pt->map(kKernVa, 0x300000, 0x1000, 0);  // kernel, read-only, executable
  EXPECT_TRUE(translate(mem, pt->cr3(), kKernVa, Access::kernel_read()));
  auto u = translate(mem, pt->cr3(), kKernVa, Access::user_read());
  ASSERT_FALSE(u);
  EXPECT_TRUE(contains(u.error(), "denied (a kernel page, user access)"));
  EXPECT_FALSE(translate(mem, pt->cr3(), kKernVa, Access::kernel_write()));
  Access no_wp = Access::kernel_write();
  no_wp.write_protect = false;  // CR0.WP clear: the kernel writes read-only pages
  EXPECT_TRUE(translate(mem, pt->cr3(), kKernVa, no_wp));

  pt->map(kUserVa, 0x301000, 0x1000, PageTableBuilder::kUser | PageTableBuilder::kNx);
  EXPECT_TRUE(translate(mem, pt->cr3(), kUserVa, Access::user_read()));
  EXPECT_FALSE(translate(mem, pt->cr3(), kUserVa, Access::user_write()));
  auto x = translate(mem, pt->cr3(), kUserVa, Access::user_exec());
  ASSERT_FALSE(x);
  EXPECT_TRUE(contains(x.error(), "no-execute"));
}

TEST_F(IntrospectTest, RestrictiveUpperLevelWins) {
  // Leaf says user+write, the PDE above says kernel read-only: the walk must AND them.
  pt->map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser, 0);
  auto t = translate(mem, pt->cr3(), kUserVa);
  ASSERT_TRUE(t);
  EXPECT_FALSE(t->user);
  EXPECT_FALSE(t->writable);
  EXPECT_FALSE(translate(mem, pt->cr3(), kUserVa, Access::user_read()));
}

TEST_F(IntrospectTest, HostileEntryPointingPastRamIsAnError) {
  pt->map(kUserVa, 0x200000, 0x1000, PageTableBuilder::kUser);
  uint64_t pde = pt->entry_gpa(kUserVa, 2);
  ASSERT_TRUE(mem.write_obj<uint64_t>(pde, 0x000F'FFFF'FFFF'F000ULL | kPtePresent));
  auto t = translate(mem, pt->cr3(), kUserVa);
  ASSERT_FALSE(t);
  EXPECT_TRUE(contains(t.error(), "PTE at 0xffffffffff"));
  EXPECT_TRUE(contains(t.error(), "outside guest RAM"));
  // CR3 itself outside RAM.
  auto c = translate(mem, 0xFEE00000, kUserVa);
  ASSERT_FALSE(c);
  EXPECT_TRUE(contains(c.error(), "PML4E at 0xfee00"));
}

TEST_F(IntrospectTest, SelfReferencingTablesTerminate) {
  // PML4[0] points at the PML4 itself: the walk reads it as PDPT, PD, PT in turn.
  ASSERT_TRUE(mem.write_obj<uint64_t>(pt->cr3(), pt->cr3() | kPtePresent | kPteWrite));
  auto t = translate(mem, pt->cr3(), 0x0);
  ASSERT_TRUE(t) << t.error().what();  // recursive mapping: the PML4 page maps itself
  EXPECT_EQ(t->gpa, pt->cr3());
  // With PS set in the self entry, the PML4E level refuses it (reserved bit).
  ASSERT_TRUE(mem.write_obj<uint64_t>(pt->cr3(), pt->cr3() | kPtePresent | kPteHuge));
  auto r = translate(mem, pt->cr3(), 0x0);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "reserved PS bit"));
}

TEST_F(IntrospectTest, LeafPointingPastRamFailsOnAccessNotOnTranslate) {
  pt->map(kUserVa, 0xFEE00000, 0x1000, PageTableBuilder::kUser);  // an MMIO page
  EXPECT_TRUE(translate(mem, pt->cr3(), kUserVa));
  AddressSpace as(mem, pt->cr3());
  std::array<uint8_t, 4> buf{};
  auto r = as.read(kUserVa, buf);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "outside guest RAM"));
}

TEST_F(IntrospectTest, ReadWriteSpanningDiscontiguousPages) {
  // Two virtually adjacent pages backed by non-adjacent frames, in reverse order.
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  pt->map(kUserVa + 0x1000, 0x203000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  AddressSpace as(mem, pt->cr3());
  std::string msg(100, 'x');
  for (size_t i = 0; i < msg.size(); ++i) msg[i] = static_cast<char>('a' + i % 26);
  uint64_t at = kUserVa + 0x1000 - 40;
  ASSERT_TRUE(as.write(at, std::span(reinterpret_cast<const uint8_t*>(msg.data()), msg.size()),
                       Access::user_write()));
  std::string back(msg.size(), '\0');
  ASSERT_TRUE(as.read(at, std::span(reinterpret_cast<uint8_t*>(back.data()), back.size())));
  EXPECT_EQ(back, msg);
  // Physically: first 40 bytes at the end of frame 0x205000, the rest at 0x203000.
  std::array<char, 4> phys{};
  ASSERT_TRUE(mem.read(0x203000, std::span(reinterpret_cast<uint8_t*>(phys.data()), 4)));
  EXPECT_EQ(std::string(phys.data(), 4), msg.substr(40, 4));
}

TEST_F(IntrospectTest, CopyIntoUnmappedSecondPageFails) {
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kRw | PageTableBuilder::kUser);
  AddressSpace as(mem, pt->cr3());
  std::array<uint8_t, 64> buf{};
  auto r = as.read(kUserVa + 0x1000 - 32, buf);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "PTE not present"));
}

TEST_F(IntrospectTest, HugeLengthsAreRefusedWithoutTouchingMemory) {
  AddressSpace as(mem, pt->cr3());
  std::array<uint8_t, 1> one{};
  // A span whose end would wrap: constructed from a real buffer but a gva near the top.
  std::array<uint8_t, 16> buf{};
  auto r = as.read(0xFFFF'FFFF'FFFF'FFF8ULL, buf);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "wraps around"));
  EXPECT_FALSE(as.read(0xFFFF'FFFF'FFFF'FFFFULL, one));  // canonical but unmapped
}

TEST_F(IntrospectTest, ReadStringStopsAtNulAndBeforeUnmappedPage) {
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kUser);
  const char s[] = "/bin/busybox";
  uint64_t at = kUserVa + 0x1000 - sizeof s;  // NUL is the page's last byte; next page unmapped
  ASSERT_TRUE(mem.write(0x205000 + 0x1000 - sizeof s, std::span(reinterpret_cast<const uint8_t*>(s), sizeof s)));
  AddressSpace as(mem, pt->cr3());
  auto r = as.read_string(at, 4096);
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(*r, "/bin/busybox");
  auto exact = as.read_string(at, 12);
  ASSERT_TRUE(exact);
  EXPECT_EQ(*exact, "/bin/busybox");
  auto short_max = as.read_string(at, 11);
  ASSERT_FALSE(short_max);
  EXPECT_TRUE(contains(short_max.error(), "no NUL within 11 bytes"));
}

TEST_F(IntrospectTest, StringWithoutNulIsBounded) {
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kUser);
  pt->map(kUserVa + 0x1000, 0x206000, 0x1000, PageTableBuilder::kUser);
  ASSERT_TRUE(mem.fill(0x205000, 'A', 0x2000));
  AddressSpace as(mem, pt->cr3());
  auto r = as.read_string(kUserVa, 100);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "no NUL within 100 bytes"));
  auto across = as.read_string(kUserVa + 10, 1 << 20);  // runs off into the unmapped third page
  ASSERT_FALSE(across);
  EXPECT_TRUE(contains(across.error(), "PTE not present"));
  // A string crossing the page boundary.
  ASSERT_TRUE(mem.write_obj<uint8_t>(0x206000 + 5, 0));
  auto cross = as.read_string(kUserVa + 0xFF0, 1000);
  ASSERT_TRUE(cross);
  EXPECT_EQ(cross->size(), 16u + 5u);
}

TEST_F(IntrospectTest, ArgvStyleArrays) {
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kUser);
  const char strs[] = "ls\0-l\0/tmp";
  ASSERT_TRUE(mem.write(0x205800, std::span(reinterpret_cast<const uint8_t*>(strs), sizeof strs)));
  uint64_t ptrs[] = {kUserVa + 0x800, kUserVa + 0x803, kUserVa + 0x806, 0};
  ASSERT_TRUE(mem.write(0x205000, std::span(reinterpret_cast<const uint8_t*>(ptrs), sizeof ptrs)));
  AddressSpace as(mem, pt->cr3());

  auto p = as.read_pointer_array(kUserVa, 16);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->size(), 3u);
  EXPECT_TRUE(as.read_pointer_array(kUserVa, 3));
  auto over = as.read_pointer_array(kUserVa, 2);
  ASSERT_FALSE(over);
  EXPECT_TRUE(contains(over.error(), "more than 2 entries"));

  auto argv = as.read_string_array(kUserVa, {});
  ASSERT_TRUE(argv) << argv.error().what();
  ASSERT_EQ(argv->size(), 3u);
  EXPECT_EQ((*argv)[0], "ls");
  EXPECT_EQ((*argv)[1], "-l");
  EXPECT_EQ((*argv)[2], "/tmp");

  AddressSpace::StringArrayLimits tight;
  tight.max_total = 8;  // "ls\0-l\0" fits (6), "/tmp\0" does not
  auto t = as.read_string_array(kUserVa, tight);
  EXPECT_FALSE(t);

  // A pointer in the array that points nowhere.
  uint64_t bad = 0x0000'1234'0000'0000ULL;
  ASSERT_TRUE(mem.write_obj<uint64_t>(0x205008, bad));
  auto b = as.read_string_array(kUserVa, {});
  ASSERT_FALSE(b);
  EXPECT_TRUE(contains(b.error(), "not mapped"));
}

TEST_F(IntrospectTest, ArrayWithoutTerminatorRunsIntoUnmappedPage) {
  pt->map(kUserVa, 0x205000, 0x1000, PageTableBuilder::kUser);
  ASSERT_TRUE(mem.fill(0x205000, 0x41, 0x1000));
  AddressSpace as(mem, pt->cr3());
  auto r = as.read_pointer_array(kUserVa, 1'000'000);
  ASSERT_FALSE(r);
  EXPECT_TRUE(contains(r.error(), "not present"));
}

TEST_F(IntrospectTest, OfVcpuChecksPagingMode) {
  VcpuRegs regs;
  regs.cr3 = pt->cr3();
  EXPECT_FALSE(AddressSpace::of_vcpu(mem, regs));
  regs.cr0 = VcpuRegs::kCr0Pg | VcpuRegs::kCr0Wp;
  regs.cr4 = VcpuRegs::kCr4Pae;
  regs.efer = VcpuRegs::kEferLma;
  auto as = AddressSpace::of_vcpu(mem, regs);
  ASSERT_TRUE(as);
  EXPECT_EQ(as->cr3(), pt->cr3());
  regs.cr4 |= VcpuRegs::kCr4La57;
  EXPECT_FALSE(AddressSpace::of_vcpu(mem, regs));
}

TEST(KvmRegs, RoundTrip) {
  kvm_regs r{};
  kvm_sregs s{};
  r.rax = 59, r.rdi = 1, r.r10 = 4, r.r15 = 15, r.rip = 0x1000, r.rflags = 0x202;
  s.cr3 = 0x5003, s.cr0 = VcpuRegs::kCr0Pg, s.efer = VcpuRegs::kEferLma, s.ss.dpl = 3;
  VcpuRegs v = vcpu_regs_from_kvm(r, s);
  EXPECT_EQ(v.syscall_nr(), 59u);
  EXPECT_EQ(v.syscall_args()[3], 4u);
  EXPECT_EQ(v.cr3, 0x5003u);
  EXPECT_EQ(v.cpl, 3);
  v.rdi = 77;
  kvm_regs back = r;
  apply_vcpu_regs(v, back);
  EXPECT_EQ(back.rdi, 77u);
  EXPECT_EQ(back.r15, 15u);
  EXPECT_EQ(back.rip, 0x1000u);
}

}  // namespace
}  // namespace gears::vmm::introspect
