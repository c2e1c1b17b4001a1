// VM groups (shm/vm_group.h) with real files and real guest-RAM memfds: two "VMs" in this one
// process join one region and read each other's RAM through /proc/self/fd; and the MPI
// accelerator's one-copy path (samples/mpi_accel/rdma_vmm.h) on top, driven by hostile guests.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <numeric>
#include <vector>

#include "core/guest_memory.h"
#include "rdma_vmm.h"
#include "shm/shared_region.h"
#include "shm/vm_group.h"

namespace gears::vmm {
namespace {

constexpr uint64_t kRam = 8ULL << 20;

std::string temp_path(const char* tag) {
  return "/dev/shm/gears-test-" + std::string(tag) + "-" + std::to_string(::getpid());
}

// One "VM": its RAM and its place in the group.
struct FakeVm {
  GuestMemory ram;
  std::unique_ptr<shm::SharedRegion> region;
  std::unique_ptr<shm::VmGroupMember> member;
};

FakeVm make_vm(const shm::RegionSpec& spec) {
  FakeVm vm;
  auto ram = GuestMemory::create(kRam);
  EXPECT_TRUE(ram) << ram.error().what();
  vm.ram = std::move(*ram);
  auto region = shm::SharedRegion::attach(spec);
  EXPECT_TRUE(region) << region.error().what();
  vm.region = std::move(*region);
  auto m = shm::VmGroupMember::join(*vm.region, vm.ram.fd(), vm.ram.size());
  EXPECT_TRUE(m) << m.error().what();
  vm.member = std::move(*m);
  return vm;
}

TEST(GuestMemoryLayout, FileOffsetFollowsTheHole) {
  const uint64_t big = GuestMemory::kLowRamEnd + (1ULL << 30);
  EXPECT_EQ(GuestMemory::file_offset(kRam, 0, kRam), 0u);
  EXPECT_FALSE(GuestMemory::file_offset(kRam, 1, kRam));
  EXPECT_FALSE(GuestMemory::file_offset(kRam, kRam, 1));
  EXPECT_FALSE(GuestMemory::file_offset(kRam, ~0ULL, 2));  // no wrap-around
  EXPECT_EQ(GuestMemory::file_offset(big, GuestMemory::kHighRamStart, 4096), GuestMemory::kLowRamEnd);
  EXPECT_FALSE(GuestMemory::file_offset(big, GuestMemory::kLowRamEnd, 1));  // the MMIO hole
  EXPECT_FALSE(GuestMemory::file_offset(big, GuestMemory::kLowRamEnd - 1, 2));  // across it
  EXPECT_FALSE(GuestMemory::file_offset(big, GuestMemory::kHighRamStart + (1ULL << 30), 1));
}

TEST(VmGroup, TwoVmsReadEachOthersRamAndShareTheVmmArea) {
  shm::RegionSpec spec{"g", 2ULL << 20, temp_path("group")};
  ::unlink(spec.path.c_str());
  FakeVm a = make_vm(spec), b = make_vm(spec);
  ASSERT_NE(a.member->self(), b.member->self());
  ASSERT_TRUE(a.ram.write(0x1000, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>("from A"), 7)));
  char buf[7] = {};
  ASSERT_TRUE(b.member->read_member_ram(a.member->self(), 0x1000, {reinterpret_cast<uint8_t*>(buf), 7}));
  EXPECT_STREQ(buf, "from A");
  // The VMM area is the same memory for both and is not what the guests see.
  a.member->vmm_area()[0] = 0x5a;
  EXPECT_EQ(b.member->vmm_area()[0], 0x5a);
  EXPECT_NE(a.member->vmm_area().data(), a.region->host());
  // Bounds: past the end of A's RAM, a wrapping range, an empty member, an impossible member.
  EXPECT_FALSE(b.member->read_member_ram(a.member->self(), kRam - 4, {reinterpret_cast<uint8_t*>(buf), 7}));
  EXPECT_FALSE(b.member->read_member_ram(a.member->self(), ~0ULL - 2, {reinterpret_cast<uint8_t*>(buf), 7}));
  const uint32_t empty = std::max(a.member->self(), b.member->self()) + 1;
  auto none = b.member->read_member_ram(empty, 0, {reinterpret_cast<uint8_t*>(buf), 1});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().what().find("no VM is member"), std::string::npos) << none.error().what();
  EXPECT_FALSE(b.member->read_member_ram(VmGroup::kMaxMembers, 0, {reinterpret_cast<uint8_t*>(buf), 1}));
  // A leaves: its record is free, B refuses to read it and can still read itself.
  const uint32_t gone = a.member->self();
  a.member.reset();
  EXPECT_FALSE(b.member->read_member_ram(gone, 0x1000, {reinterpret_cast<uint8_t*>(buf), 7}));
  EXPECT_TRUE(b.member->read_member_ram(b.member->self(), 0, {reinterpret_cast<uint8_t*>(buf), 1}));
}

TEST(VmGroup, ARecordOfADeadProcessIsTakenOverAndAFullGroupIsRefused) {
  shm::RegionSpec spec{"g", 2ULL << 20, temp_path("full")};
  ::unlink(spec.path.c_str());
  auto region = shm::SharedRegion::attach(spec);
  ASSERT_TRUE(region) << region.error().what();
  // Member 0 was a process that is gone: pid 1 never has our start time... use a dead pid.
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  int status = 0;
  ::waitpid(child, &status, 0);
  auto* rec = reinterpret_cast<uint64_t*>((*region)->vmm_area().data());
  rec[0] = static_cast<uint64_t>(child) << 1;  // ready, owned by a dead pid
  auto ram = GuestMemory::create(kRam);
  ASSERT_TRUE(ram);
  std::vector<std::unique_ptr<shm::VmGroupMember>> members;
  for (uint32_t i = 0; i < VmGroup::kMaxMembers; ++i) {
    auto m = shm::VmGroupMember::join(**region, ram->fd(), ram->size());
    ASSERT_TRUE(m) << i << ": " << m.error().what();
    members.push_back(std::move(*m));
  }
  EXPECT_EQ(members[0]->self(), 0u);  // the dead process's record
  auto extra = shm::VmGroupMember::join(**region, ram->fd(), ram->size());
  ASSERT_FALSE(extra);
  EXPECT_NE(extra.error().what().find("at most that many VMs"), std::string::npos) << extra.error().what();
}

TEST(VmGroup, AForgedRecordIsNotMapped) {
  shm::RegionSpec spec{"g", 2ULL << 20, temp_path("forged")};
  ::unlink(spec.path.c_str());
  FakeVm a = make_vm(spec), b = make_vm(spec);
  // Point A's record at another descriptor of this process (not the RAM it published).
  auto* rec = reinterpret_cast<uint64_t*>(a.region->vmm_area().data()) + a.member->self() * 8;
  const uint32_t saved_fd = static_cast<uint32_t>(rec[5]);
  rec[5] = static_cast<uint64_t>(b.ram.fd());
  char c = 0;
  auto r = b.member->read_member_ram(a.member->self(), 0, {reinterpret_cast<uint8_t*>(&c), 1});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("is not the guest RAM it published"), std::string::npos) << r.error().what();
  rec[5] = saved_fd;
  EXPECT_TRUE(b.member->read_member_ram(a.member->self(), 0, {reinterpret_cast<uint8_t*>(&c), 1}));
}

// ---------------------------------------------------------------- the one-copy path

struct RdmaPair : ::testing::Test {
  void SetUp() override {
    spec = {"g", 2ULL << 20, temp_path("rdma")};
    ::unlink(spec.path.c_str());
    a = make_vm(spec);
    b = make_vm(spec);
    ASSERT_EQ(sa.attach(a.member.get(), ram_of(a)), "");
    ASSERT_EQ(sb.attach(b.member.get(), ram_of(b)), "");
  }
  static mpi_rdma::GuestRam ram_of(FakeVm& vm) {
    return [&vm](uint64_t gpa, uint64_t len) { return vm.ram.span(gpa, len); };
  }
  // Writes an extent list into `vm`'s RAM at `at`.
  static void put_list(FakeVm& vm, uint64_t at, const std::vector<gears_rdma_extent>& list) {
    ASSERT_TRUE(vm.ram.write(at, {reinterpret_cast<const uint8_t*>(list.data()), list.size() * sizeof list[0]}));
  }
  uint64_t member_key(uint32_t key) const { return (uint64_t{a.member->self()} << 32) | key; }

  shm::RegionSpec spec;
  FakeVm a, b;
  mpi_rdma::VmmSide sa, sb;
};

TEST_F(RdmaPair, OneCopyFromScatteredPagesIntoScatteredPages) {
  // A's buffer: 3 pieces in A's RAM (out of order), 10000 bytes of a pattern.
  std::vector<uint8_t> pattern(10000);
  std::iota(pattern.begin(), pattern.end(), 7);
  const std::vector<gears_rdma_extent> src{{0x300000, 4000}, {0x100000, 3000}, {0x200123, 3000}};
  uint64_t done = 0;
  for (const auto& e : src) {
    ASSERT_TRUE(a.ram.write(e.gpa, {pattern.data() + done, e.len}));
    done += e.len;
  }
  put_list(a, 0x10000, src);
  const int64_t key = sa.reg(0x10000, src.size(), 10000, 0x11000);
  ASSERT_GE(key, 0);
  uint64_t cookie = 0;
  ASSERT_TRUE(a.ram.read(0x11000, {reinterpret_cast<uint8_t*>(&cookie), 8}));
  ASSERT_NE(cookie, 0u);

  // B pulls [2500, 2500 + 6000) into two pieces of its own RAM.
  const std::vector<gears_rdma_extent> dst{{0x400000, 1000}, {0x500010, 5000}};
  put_list(b, 0x20000, dst);
  ASSERT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 2500, 0x20000, dst.size()), 6000);
  std::vector<uint8_t> got(6000);
  ASSERT_TRUE(b.ram.read(0x400000, {got.data(), 1000}));
  ASSERT_TRUE(b.ram.read(0x500010, {got.data() + 1000, 5000}));
  EXPECT_TRUE(std::equal(got.begin(), got.end(), pattern.begin() + 2500));

  // Past the registration's end, a wrong cookie, a wrong key, after the deregistration: refused.
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 4001, 0x20000, dst.size()), -ERANGE);
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie ^ 2, 0, 0x20000, dst.size()), -ENOENT);
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key) + 1), cookie, 0, 0x20000, dst.size()), -ENOENT);
  EXPECT_EQ(sa.dereg(static_cast<uint64_t>(key), cookie ^ 2), -ENOENT);
  EXPECT_EQ(sa.dereg(static_cast<uint64_t>(key), cookie), 0);
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, 0x20000, dst.size()), -ENOENT);
}

TEST_F(RdmaPair, HostileGuestsGetErrorsAndTouchNothingElse) {
  const std::vector<gears_rdma_extent> one{{0x100000, 4096}};
  put_list(a, 0x10000, one);
  // Registration: lists outside RAM, pieces outside RAM, lengths that do not add up, zero and
  // oversized pieces, too many pieces, a cookie address outside RAM.
  EXPECT_EQ(sa.reg(kRam - 8, 1, 4096, 0x11000), -EFAULT);
  EXPECT_EQ(sa.reg(0x10000, 0, 0, 0x11000), -EINVAL);
  EXPECT_EQ(sa.reg(0x10000, GEARS_MPI_RDMA_MAX_EXTENTS + 1, 4096, 0x11000), -EINVAL);
  EXPECT_EQ(sa.reg(0x10000, 1, 4095, 0x11000), -EINVAL);
  EXPECT_EQ(sa.reg(0x10000, 1, 4096, kRam), -EFAULT);
  put_list(a, 0x12000, {{kRam - 100, 4096}});
  EXPECT_EQ(sa.reg(0x12000, 1, 4096, 0x11000), -EFAULT);
  put_list(a, 0x12000, {{0x100000, 0}});
  EXPECT_EQ(sa.reg(0x12000, 1, 0, 0x11000), -EINVAL);
  put_list(a, 0x12000, {{0x100000, GEARS_MPI_RDMA_MAX_LEN + 1}});
  EXPECT_EQ(sa.reg(0x12000, 1, GEARS_MPI_RDMA_MAX_LEN + 1, 0x11000), -EINVAL);
  put_list(a, 0x12000, {{0x100000, ~0ULL / 2}, {0x100000, ~0ULL / 2 + 2}});  // sums past 2^64
  EXPECT_EQ(sa.reg(0x12000, 2, 0, 0x11000), -EINVAL);

  const int64_t key = sa.reg(0x10000, 1, 4096, 0x11000);
  ASSERT_GE(key, 0);
  uint64_t cookie = 0;
  ASSERT_TRUE(a.ram.read(0x11000, {reinterpret_cast<uint8_t*>(&cookie), 8}));
  // A then rewrites its published list to point outside its RAM: B's copy fails cleanly.
  put_list(a, 0x10000, {{kRam + 0x1000, 4096}});
  put_list(b, 0x20000, {{0x400000, 4096}});
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, 0x20000, 1), -EFAULT);
  // ... or to a shorter list than the registration said.
  put_list(a, 0x10000, {{0x100000, 100}});
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, 0x20000, 1), -EFAULT);
  // B's own list outside its RAM; a member out of range; an empty member.
  put_list(a, 0x10000, one);
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, kRam, 1), -EFAULT);
  put_list(b, 0x20000, {{kRam - 10, 4096}});
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, 0x20000, 1), -EFAULT);
  put_list(b, 0x20000, {{0x400000, 4096}});
  EXPECT_EQ(sb.get((uint64_t{GEARS_MPI_RDMA_MEMBERS} << 32) | 0, cookie, 0, 0x20000, 1), -EINVAL);
  EXPECT_EQ(sb.get((uint64_t{15} << 32) | 0, cookie, 0, 0x20000, 1), -ENOENT);
  EXPECT_EQ(sb.get(member_key(GEARS_MPI_RDMA_KEYS), cookie, 0, 0x20000, 1), -EINVAL);
  // Still works for a well-formed request, and the counters saw every refusal.
  EXPECT_EQ(sb.get(member_key(static_cast<uint32_t>(key)), cookie, 0, 0x20000, 1), 4096);
  uint64_t refused = 0;
  for (const auto& [name, value] : sb.counters())
    if (name == "rdma_refused") refused = value;
  EXPECT_EQ(refused, 7u);  // B's refusals above (A counts its own)
}

TEST_F(RdmaPair, ATableFullOfRegistrationsRefusesTheNextAndDetachFreesThem) {
  put_list(a, 0x10000, {{0x100000, 4096}});
  for (uint32_t i = 0; i < GEARS_MPI_RDMA_KEYS; ++i) ASSERT_GE(sa.reg(0x10000, 1, 4096, 0x11000), 0) << i;
  EXPECT_EQ(sa.reg(0x10000, 1, 4096, 0x11000), -ENOSPC);
  sa.detach();
  EXPECT_EQ(sa.reg(0x10000, 1, 4096, 0x11000), -ENODEV);
  ASSERT_EQ(sa.attach(a.member.get(), ram_of(a)), "");
  EXPECT_GE(sa.reg(0x10000, 1, 4096, 0x11000), 0);
}

}  // namespace
}  // namespace gears::vmm
