#include <gtest/gtest.h>

#include "page_table_builder.h"
#include "tools/introspect/address_space.h"
#include "tools/syscall_exit/stub_codegen.h"
#include "tools/syscall_exit/stub_placement.h"

namespace gears::vmm::syscall_exit {
namespace {

using introspect::testing::PageTableBuilder;
constexpr uint64_t kMiB = 1ULL << 20;
constexpr uint64_t kImage = 0xffff'ffff'8100'0000ULL;  // kernel text, as without KASLR
constexpr uint64_t kEntry = kImage + 0x60'0000 + 0x40;

class PlacementTest : public ::testing::Test {
 protected:
  void SetUp() override {
    mem = std::move(*GuestMemory::create(16 * kMiB));
    pt.emplace(mem, 0x10000, 0x11000);
    // A 16 MiB kernel image in 2 MiB pages (image at 0x1000000 physical).
    for (uint64_t off = 0; off < 16 * kMiB; off += 2 * kMiB)
      pt->map(kImage + off, 0x0 + off % (8 * kMiB), 2 * kMiB, PageTableBuilder::kRw);
  }
  GuestMemory mem;
  std::optional<PageTableBuilder> pt;
};

TEST_F(PlacementTest, FindsTheFirstFreeSlotAfterTheImageAndMapsTheStub) {
  auto p = find_stub_slot(mem, pt->cr3(), kEntry);
  ASSERT_TRUE(p) << p.error().what();
  EXPECT_EQ(p->stub_gva, kImage + 16 * kMiB);

  StubParams sp;
  sp.stub_gva = p->stub_gva;
  sp.original_entry = kEntry;
  sp.allow_indirect = false;
  auto stub = generate_stub(sp);
  ASSERT_TRUE(stub) << stub.error().what();
  const uint64_t stub_gpa = 0x9d000, pt_gpa = 0x9c000;
  ASSERT_TRUE(mem.write(stub_gpa, stub->bytes));
  ASSERT_TRUE(map_stub(mem, *p, pt_gpa, stub_gpa));

  // The guest now sees the stub at stub_gva: kernel-executable, not user, not writable.
  auto t = introspect::translate(mem, pt->cr3(), p->stub_gva + stub->exit_offset,
                                 {introspect::Access::Mode::kKernel, introspect::Access::Kind::kExecute, true});
  ASSERT_TRUE(t) << t.error().what();
  EXPECT_EQ(t->gpa, stub_gpa + stub->exit_offset);
  EXPECT_FALSE(t->user);
  EXPECT_FALSE(t->writable);
  introspect::AddressSpace as(mem, pt->cr3());
  EXPECT_EQ(*as.read_obj<uint32_t>(p->stub_gva), 0xFA1E0FF3u);  // endbr64

  // The slot is taken now: a second search finds the next one, a second map is refused.
  auto again = find_stub_slot(mem, pt->cr3(), kEntry);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->stub_gva, kImage + 18 * kMiB);
  EXPECT_FALSE(map_stub(mem, *p, pt_gpa, stub_gpa));
}

TEST_F(PlacementTest, StaysBelowTheModuleArea) {
  // Fill every slot above the image up to 0xffffffffa0000000: only slots below remain.
  for (uint64_t gva = kImage + 16 * kMiB; gva < 0xffff'ffff'a000'0000ULL; gva += 2 * kMiB)
    pt->map(gva, 0, 2 * kMiB, 0);
  auto p = find_stub_slot(mem, pt->cr3(), kEntry);
  ASSERT_TRUE(p) << p.error().what();
  EXPECT_EQ(p->stub_gva, kImage - 2 * kMiB);  // the nearest one below the image
}

TEST_F(PlacementTest, Refusals) {
  EXPECT_FALSE(find_stub_slot(mem, pt->cr3(), 0x401000));  // not a kernel address
  auto unmapped = find_stub_slot(mem, 0x20000, kEntry);    // a CR3 with nothing in it
  EXPECT_FALSE(unmapped);
  StubPlacement p{kImage + 16 * kMiB, 0x10000};
  EXPECT_FALSE(map_stub(mem, p, 0x9c001, 0x9d000));          // misaligned
  EXPECT_FALSE(map_stub(mem, p, 0xFEE00000, 0x9d000));       // not RAM
}

}  // namespace
}  // namespace gears::vmm::syscall_exit
