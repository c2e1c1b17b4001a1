// --shm: the spec parser, the attach/detach life cycle of the backing file (two "VMs" in one
// process attach the same file; the last one out removes it; a file a dead VM left behind is
// started afresh), and the ACPI description the guest finds the region by.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include "acpi/aml.h"
#include "acpi/tables.h"
#include "config/vm_config.h"
#include "shm/region_spec.h"
#include "shm/shared_region.h"
#include "x86/layout.h"

namespace {

using namespace gears::vmm;

std::string temp_path(const char* tag) {
  return "/dev/shm/gears-test-" + std::string(tag) + "-" + std::to_string(::getpid());
}

TEST(RegionSpec, ParsesAndDefaultsThePath) {
  auto r = shm::parse_region_spec("name=mpi,size=64M");
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->name, "mpi");
  EXPECT_EQ(r->size, 64ULL << 20);
  EXPECT_EQ(r->path, "/dev/shm/gears-shm-mpi");
  r = shm::parse_region_spec("size=2M,path=/tmp/x,name=a_b-9");
  ASSERT_TRUE(r) << r.error().what();
  EXPECT_EQ(r->path, "/tmp/x");
}

TEST(RegionSpec, RefusesBadSpecsWithOneLine) {
  for (const char* bad : {"", "name=mpi", "size=2M", "name=MPI,size=2M", "name=a/b,size=2M", "name=mpi,size=3M",
                          "name=mpi,size=0", "name=mpi,size=128G", "name=mpi,size=2M,path=rel",
                          "name=mpi,size=2M,colour=red", "name=mpi,size=2M,junk",
                          "name=0123456789012345678901234567890123,size=2M"}) {
    auto r = shm::parse_region_spec(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().what().find('\n'), std::string::npos);
    EXPECT_EQ(r.error().what().rfind("--shm", 0), 0u) << r.error().what();
  }
}

TEST(RegionSpec, CommandLineAndJsonAndValidation) {
  const char* argv[] = {"gears-vmm", "--kernel", "/k", "--shm", "name=a,size=2M", "--shm", "name=b,size=4M,path=/dev/shm/x"};
  auto cfg = config::parse_args(7, argv);
  ASSERT_TRUE(cfg) << cfg.error().what();
  ASSERT_EQ(cfg->shared_regions.size(), 2u);
  EXPECT_EQ(cfg->shared_regions[1].size, 4ULL << 20);
  config::VmConfig j;
  ASSERT_TRUE(config::apply_json(R"({"shm": ["name=mpi,size=8M"]})", j));
  ASSERT_EQ(j.shared_regions.size(), 1u);
  EXPECT_FALSE(config::apply_json(R"({"shm": [{"name": "mpi"}]})", j));
  // The same name twice is refused by validation.
  config::VmConfig twice = *cfg;
  twice.kernel = "/proc/self/exe";
  twice.shared_regions[1].name = "a";
  auto v = config::validate(twice, 0);
  ASSERT_FALSE(v);
  EXPECT_NE(v.error().what().find("given twice"), std::string::npos);
}

TEST(SharedRegion, TwoVmsShareTheMemoryAndTheLastOneOutRemovesTheFile) {
  shm::RegionSpec spec{"t", 2ULL << 20, temp_path("share")};
  ::unlink(spec.path.c_str());
  auto a = shm::SharedRegion::attach(spec);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE((*a)->first());
  auto b = shm::SharedRegion::attach(spec);
  ASSERT_TRUE(b) << b.error().what();
  EXPECT_FALSE((*b)->first());
  std::memcpy((*a)->host() + 4096, "hello", 6);
  EXPECT_STREQ(reinterpret_cast<const char*>((*b)->host() + 4096), "hello");
  // A peer asking for another size is refused while the region is in use.
  auto c = shm::SharedRegion::attach({"t", 4ULL << 20, spec.path});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().what().find("attached by another VM"), std::string::npos) << c.error().what();
  a->reset();
  EXPECT_TRUE(std::filesystem::exists(spec.path));  // b is still attached
  EXPECT_STREQ(reinterpret_cast<const char*>((*b)->host() + 4096), "hello");
  b->reset();
  EXPECT_FALSE(std::filesystem::exists(spec.path));
}

TEST(SharedRegion, AFileADeadVmLeftBehindStartsAfresh) {
  shm::RegionSpec spec{"t", 2ULL << 20, temp_path("stale")};
  {
    int fd = ::open(spec.path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::ftruncate(fd, 4ULL << 20), 0);  // another size, and old contents
    ASSERT_EQ(::pwrite(fd, "old", 3, 0), 3);
    ::close(fd);  // no lock held: its VM is gone
  }
  auto a = shm::SharedRegion::attach(spec);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE((*a)->first());
  EXPECT_EQ((*a)->host()[0], 0);
  struct stat st{};
  ASSERT_EQ(::stat(spec.path.c_str(), &st), 0);
  EXPECT_EQ(static_cast<uint64_t>(st.st_size), shm::SharedRegion::kVmmAreaSize + spec.size);
}

TEST(SharedRegion, RefusesWhatIsNotARegularFileAndLeavesItAlone) {
  // A FIFO: opens read-write, is not a regular file. The refused path must still exist after
  // the refusal (an early version unlinked whatever it had opened, /dev/null included).
  const std::string fifo = temp_path("fifo");
  ::unlink(fifo.c_str());
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  auto r = shm::SharedRegion::attach({"t", 2ULL << 20, fifo});
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().what().find("not a regular file"), std::string::npos) << r.error().what();
  EXPECT_TRUE(std::filesystem::exists(fifo));
  ::unlink(fifo.c_str());
  const std::string link = temp_path("link");
  ::unlink(link.c_str());
  ASSERT_EQ(::symlink("/dev/shm", link.c_str()), 0);
  EXPECT_FALSE(shm::SharedRegion::attach({"t", 2ULL << 20, link}));  // O_NOFOLLOW
  ::unlink(link.c_str());
}

TEST(SharedRegion, SpanIsBoundsChecked) {
  shm::RegionSpec spec{"t", 2ULL << 20, temp_path("span")};
  auto a = shm::SharedRegion::attach(spec);
  ASSERT_TRUE(a) << a.error().what();
  EXPECT_TRUE((*a)->span(0, spec.size));
  EXPECT_TRUE((*a)->span(spec.size, 0));
  EXPECT_FALSE((*a)->span(spec.size, 1));
  EXPECT_FALSE((*a)->span(1, spec.size));
  EXPECT_FALSE((*a)->span(~0ULL, 2));  // no wrap-around
}

TEST(SharedRegionLayout, AboveRamAndAligned) {
  EXPECT_EQ(x86::shared_region_base(512ULL << 20), 64ULL << 30);
  EXPECT_EQ(x86::shared_region_base(100ULL << 30), 100ULL << 30);
  EXPECT_EQ(x86::shared_region_base((100ULL << 30) + 1), 101ULL << 30);
}

TEST(SharedRegionAcpi, DsdtDescribesTheRegionByHidUidAndQwordRange) {
  auto dsdt = acpi::build_dsdt({}, {{"mpi", 0x10'0000'0000ULL, 64ULL << 20}});
  const std::string text(dsdt.begin(), dsdt.end());
  EXPECT_NE(text.find("S000"), std::string::npos);
  EXPECT_NE(text.find("GEAR0001"), std::string::npos);
  // _UID is the name, as a string (0x0D prefix).
  EXPECT_NE(text.find(std::string("_UID\x0Dmpi\0", 9)), std::string::npos);
  auto q = acpi::aml::qword_memory(0x10'0000'0000ULL, 64ULL << 20);
  ASSERT_EQ(q.size(), 46u);
  EXPECT_NE(std::search(dsdt.begin(), dsdt.end(), q.begin(), q.end()), dsdt.end());
  uint64_t min = 0, max = 0, len = 0;
  std::memcpy(&min, &q[14], 8);
  std::memcpy(&max, &q[22], 8);
  std::memcpy(&len, &q[38], 8);
  EXPECT_EQ(min, 0x10'0000'0000ULL);
  EXPECT_EQ(max, 0x10'0000'0000ULL + (64ULL << 20) - 1);
  EXPECT_EQ(len, 64ULL << 20);
  EXPECT_EQ(acpi::sum_bytes(dsdt.data(), dsdt.size()), 0);
}

}  // namespace
