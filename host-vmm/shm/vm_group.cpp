#include "shm/vm_group.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "core/guest_memory.h"

namespace gears::vmm::shm {
namespace {

// One member's record in the table; 64 bytes, written by its owner only (after the claim).
struct MemberRecord {
  uint64_t state;  // 0 free; (pid << 1) | 1 being written; pid << 1 ready (atomic_ref)
  uint64_t start_time;
  uint64_t ram_dev, ram_ino, ram_size;
  uint32_t ram_fd, pad;
  uint64_t reserved[2];
};
static_assert(sizeof(MemberRecord) == 64);
static_assert(VmGroup::kMaxMembers * sizeof(MemberRecord) <= VmGroupMember::kTableSize);
static_assert(VmGroupMember::kTableSize < SharedRegion::kVmmAreaSize);

MemberRecord* record(SharedRegion& region, uint32_t i) {
  return reinterpret_cast<MemberRecord*>(region.vmm_area().data()) + i;
}
std::atomic_ref<uint64_t> state_of(MemberRecord* r) { return std::atomic_ref<uint64_t>(r->state); }

// True when the process that holds (or is writing) `state` is gone: the record may be taken.
bool holder_gone(const MemberRecord* r, uint64_t state) {
  const auto pid = static_cast<pid_t>(state >> 1);
  const uint64_t now = process_start_time(pid);
  if (now == 0) return true;
  // A ready record names its process by pid and start time: another start time is pid reuse.
  return (state & 1) == 0 && std::atomic_ref<const uint64_t>(r->start_time).load(std::memory_order_relaxed) != now;
}

}  // namespace

uint64_t process_start_time(pid_t pid) {
  if (pid <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(f, line)) return 0;
  // The command name (field 2) may hold spaces and parentheses: count fields after the last ')'.
  const auto close = line.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(line.substr(close + 1));
  std::string field;
  for (int i = 3; i <= 22 && rest >> field; ++i)
    if (i == 22) return std::strtoull(field.c_str(), nullptr, 10);
  return 0;
}

struct VmGroupMember::Mapping {
  uint64_t state = 0, start_time = 0, ino = 0, size = 0;
  const uint8_t* base = nullptr;
  ~Mapping() {
    if (base) ::munmap(const_cast<uint8_t*>(base), size);
  }
};

Expected<std::unique_ptr<VmGroupMember>> VmGroupMember::join(SharedRegion& region, int ram_fd, uint64_t ram_size) {
  struct stat st{};
  if (::fstat(ram_fd, &st) < 0) return fail_errno("VM group " + region.spec().name + ": guest RAM descriptor");
  const pid_t pid = ::getpid();
  const uint64_t writing = (static_cast<uint64_t>(pid) << 1) | 1;
  for (uint32_t i = 0; i < kMaxMembers; ++i) {
    MemberRecord* r = record(region, i);
    uint64_t s = state_of(r).load(std::memory_order_acquire);
    if (s != 0 && !holder_gone(r, s)) continue;
    if (!state_of(r).compare_exchange_strong(s, writing, std::memory_order_acq_rel)) continue;
    r->start_time = process_start_time(pid);
    r->ram_dev = st.st_dev;
    r->ram_ino = st.st_ino;
    r->ram_size = ram_size;
    r->ram_fd = static_cast<uint32_t>(ram_fd);
    state_of(r).store(writing & ~1ULL, std::memory_order_release);
    return std::unique_ptr<VmGroupMember>(new VmGroupMember(region, i));
  }
  return fail("VM group " + region.spec().name + ": all " + std::to_string(kMaxMembers) +
              " members are running VMs (at most that many VMs share one --shm region)");
}

VmGroupMember::~VmGroupMember() {
  uint64_t mine = static_cast<uint64_t>(::getpid()) << 1;
  state_of(record(region_, self_)).compare_exchange_strong(mine, 0, std::memory_order_acq_rel);
}

std::span<uint8_t> VmGroupMember::vmm_area() { return region_.vmm_area().subspan(kTableSize); }

Expected<std::shared_ptr<const VmGroupMember::Mapping>> VmGroupMember::mapping_of(uint32_t member) {
  MemberRecord* r = record(region_, member);
  const uint64_t s = state_of(r).load(std::memory_order_acquire);
  if (s == 0 || (s & 1)) return fail("VM group " + region_.spec().name + ": no VM is member " + std::to_string(member));
  MemberRecord copy;
  std::memcpy(&copy, r, sizeof copy);  // the owner wrote it before publishing `s`
  if (state_of(r).load(std::memory_order_acquire) != s)
    return fail("VM group " + region_.spec().name + ": member " + std::to_string(member) + " changed");

  std::lock_guard lock(mu_);
  auto& m = mapped_[member];
  if (m && m->state == s && m->start_time == copy.start_time && m->ino == copy.ram_ino) return m;
  m.reset();
  const std::string who = "VM group " + region_.spec().name + ": member " + std::to_string(member);
  if (process_start_time(static_cast<pid_t>(s >> 1)) != copy.start_time) return fail(who + " is not running");
  const std::string path = "/proc/" + std::to_string(s >> 1) + "/fd/" + std::to_string(copy.ram_fd);
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(who + ": opening its guest RAM (" + path + ")");
  struct stat st{};
  const bool same = ::fstat(fd, &st) == 0 && st.st_dev == copy.ram_dev && st.st_ino == copy.ram_ino &&
                    static_cast<uint64_t>(st.st_size) == copy.ram_size && copy.ram_size > 0;
  void* p = same ? ::mmap(nullptr, copy.ram_size, PROT_READ, MAP_SHARED, fd, 0) : MAP_FAILED;
  ::close(fd);
  if (!same) return fail(who + ": " + path + " is not the guest RAM it published");
  if (p == MAP_FAILED) return fail_errno(who + ": mapping its guest RAM");
  auto fresh = std::make_shared<Mapping>();
  fresh->state = s;
  fresh->start_time = copy.start_time;
  fresh->ino = copy.ram_ino;
  fresh->size = copy.ram_size;
  fresh->base = static_cast<const uint8_t*>(p);
  m = std::move(fresh);
  return m;
}

Expected<void> VmGroupMember::read_member_ram(uint32_t member, uint64_t gpa, std::span<uint8_t> out) {
  if (member >= kMaxMembers)
    return fail("VM group " + region_.spec().name + ": member " + std::to_string(member) + " is out of range");
  auto m = mapping_of(member);
  if (!m) return Unexpected<Error>{m.error()};
  // The RAM's memfd is sealed at its size (GuestMemory::create): the mapping cannot fault.
  const auto off = GuestMemory::file_offset((*m)->size, gpa, out.size());
  if (!off) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "guest-physical range 0x%llx+0x%zx", static_cast<unsigned long long>(gpa), out.size());
    return fail("VM group " + region_.spec().name + ": " + buf + " is outside member " + std::to_string(member) + "'s RAM");
  }
  std::memcpy(out.data(), (*m)->base + *off, out.size());
  return {};
}

}  // namespace gears::vmm::shm
