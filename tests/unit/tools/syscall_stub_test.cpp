// The selective-exit stub, checked three ways: its bytes, objdump's reading of them, and by
// running it on the host (the `out` faults at CPL3: SIGSEGV at the exit offset = "exit taken";
// reaching the landing function = "passed to the original entry").
#include <gtest/gtest.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

#include "tools/syscall_exit/stub_codegen.h"
#include "tools/syscall_exit/syscall_bitmap.h"

extern "C" {
// Where the stub's final jump lands on the host: records the visit and returns to the caller.
volatile int gears_stub_landed = 0;
void gears_stub_landing();
}
asm(".text\n"
    ".globl gears_stub_landing\n"
    "gears_stub_landing:\n"
    "  movl $1, gears_stub_landed(%rip)\n"
    "  ret\n");

namespace gears::vmm::syscall_exit {
namespace {

TEST(SyscallBitmap, SetTestList) {
  std::vector<uint8_t> mem(64, 0);
  SyscallBitmap bm(mem, 512);
  EXPECT_TRUE(bm.set(39, true));
  EXPECT_TRUE(bm.set(0, true));
  EXPECT_TRUE(bm.set(511, true));
  EXPECT_FALSE(bm.set(512, true));
  EXPECT_TRUE(bm.test(39));
  EXPECT_FALSE(bm.test(38));
  EXPECT_FALSE(bm.test(100000));
  EXPECT_EQ(mem[39 / 8], 1u << (39 % 8));
  EXPECT_EQ(bm.selected(), (std::vector<uint32_t>{0, 39, 511}));
  EXPECT_TRUE(bm.set(39, false));
  EXPECT_FALSE(bm.test(39));
  bm.set_all(true);
  EXPECT_EQ(bm.selected().size(), 512u);
  bm.set_all(false);
  EXPECT_TRUE(bm.selected().empty());
}

TEST(SyscallBitmap, ShortStorageShrinksTheRange) {
  std::vector<uint8_t> mem(2, 0);
  SyscallBitmap bm(mem, 512);
  EXPECT_EQ(bm.count(), 16u);
  EXPECT_FALSE(bm.set(16, true));
}

constexpr uint64_t kKernelEntry = 0xffff'ffff'8160'0000ULL;  // entry_SYSCALL_64-like

TEST(SyscallStub, DirectLayoutBytes) {
  StubParams p;
  p.stub_gva = kKernelEntry + 0x40'0000;  // a 2 MiB slot near the kernel image
  p.original_entry = kKernelEntry;
  p.endbr64 = false;  // offsets below count from the cmp
  p.exit_all_flag = false;  // the exit-all prefix has its own test
  auto s = generate_stub(p);
  ASSERT_TRUE(s) << s.error().what();
  const auto& b = s->bytes;
  EXPECT_TRUE(s->direct_jump);
  EXPECT_EQ(b[0], 0x3D);  // cmp eax, 512
  uint32_t count;
  std::memcpy(&count, &b[1], 4);
  EXPECT_EQ(count, 512u);
  EXPECT_EQ(b[5], 0x73);  // jae high
  EXPECT_EQ(std::vector<uint8_t>(b.begin() + 7, b.begin() + 10), (std::vector<uint8_t>{0x0F, 0xA3, 0x05}));
  int32_t disp;
  std::memcpy(&disp, &b[10], 4);
  EXPECT_EQ(14 + disp, static_cast<int32_t>(s->bitmap_offset));  // RIP-relative from the end of bt
  EXPECT_EQ(s->exit_offset, 16u);
  EXPECT_EQ(b[16], 0xE6);
  EXPECT_EQ(b[17], kDefaultExitPort);
  EXPECT_EQ(s->resume_offset, 18u);
  EXPECT_EQ(b[18], 0xE9);
  std::memcpy(&disp, &b[19], 4);
  EXPECT_EQ(p.stub_gva + 23 + static_cast<int64_t>(disp), kKernelEntry);
  EXPECT_EQ(s->bitmap_offset % 8, 0u);
  EXPECT_EQ(s->bitmap_bytes, 64u);
  EXPECT_EQ(b.size(), s->bitmap_offset + 64u);
  for (uint32_t i = s->bitmap_offset; i < b.size(); ++i) EXPECT_EQ(b[i], 0) << i;
}

TEST(SyscallStub, FarEntryUsesIndirectJumpOrFails) {
  StubParams p;
  p.stub_gva = 0xffff'fe80'0000'0000ULL;  // top-level slot 509
  p.original_entry = kKernelEntry;
  p.endbr64 = false;
  p.exit_all_flag = false;
  auto s = generate_stub(p);
  ASSERT_TRUE(s) << s.error().what();
  EXPECT_FALSE(s->direct_jump);
  EXPECT_EQ(s->bytes[18], 0xFF);
  EXPECT_EQ(s->bytes[19], 0x25);
  int32_t disp;
  std::memcpy(&disp, &s->bytes[20], 4);
  uint64_t target;
  std::memcpy(&target, &s->bytes[24 + disp], 8);
  EXPECT_EQ(target, kKernelEntry);
  p.allow_indirect = false;
  auto refused = generate_stub(p);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("more than 2 GiB"), std::string::npos);
}

TEST(SyscallStub, StartsWithEndbr64ByDefault) {
  StubParams p;
  p.stub_gva = kKernelEntry + 0x40'0000;
  p.original_entry = kKernelEntry;
  auto s = generate_stub(p);
  ASSERT_TRUE(s);
  EXPECT_EQ(std::vector<uint8_t>(s->bytes.begin(), s->bytes.begin() + 4), (std::vector<uint8_t>{0xF3, 0x0F, 0x1E, 0xFA}));
  // cmp byte [rip+flag], 0 ; jne hit   (the exit-all flag), then cmp eax, count
  EXPECT_EQ(s->bytes[4], 0x80);
  EXPECT_EQ(s->bytes[5], 0x3D);
  int32_t disp;
  std::memcpy(&disp, &s->bytes[6], 4);
  EXPECT_EQ(s->bytes[10], 0x00);
  EXPECT_EQ(11 + disp, static_cast<int32_t>(s->flag_offset));
  EXPECT_EQ(s->bytes[11], 0x75);
  EXPECT_EQ(13 + static_cast<int8_t>(s->bytes[12]), static_cast<int>(s->exit_offset));  // jne hit
  EXPECT_EQ(s->bytes[13], 0x3D);
  EXPECT_EQ(s->exit_offset, 29u);
  EXPECT_EQ(s->bytes[29], 0xE6);
  EXPECT_EQ(s->bytes[s->flag_offset], 0);
}

TEST(SyscallStub, RejectsBadParameters) {
  StubParams p;
  p.count = 0;
  EXPECT_FALSE(generate_stub(p));
  p.count = 100000;
  EXPECT_FALSE(generate_stub(p));
  p.count = 512;
  p.hypercall_nr = 100;  // inside the table: ambiguous
  EXPECT_FALSE(generate_stub(p));
}

// objdump's view of the code, where objdump is installed (binutils).
std::string disassemble(const Stub& s, uint64_t vma) {
  if (access("/usr/bin/objdump", X_OK) != 0) return {};
  char path[] = "/tmp/gears-stub-XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return {};
  (void)!write(fd, s.bytes.data(), s.bitmap_offset);
  close(fd);
  char vma_s[32];
  std::snprintf(vma_s, sizeof vma_s, "0x%llx", static_cast<unsigned long long>(vma));
  std::string cmd = std::string("objdump -D -b binary -m i386:x86-64 -M intel --adjust-vma=") + vma_s + " " + path;
  std::string out;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[512];
    while (fgets(buf, sizeof buf, f)) out += buf;
    pclose(f);
  }
  unlink(path);
  return out;
}

TEST(SyscallStub, ObjdumpReadsTheIntendedInstructions) {
  StubParams p;
  p.stub_gva = kKernelEntry + 0x40'0000;
  p.original_entry = kKernelEntry;
  auto s = generate_stub(p);
  ASSERT_TRUE(s);
  std::string d = disassemble(*s, p.stub_gva);
  if (d.empty()) GTEST_SKIP() << "objdump not available";
  for (const char* want : {"endbr64", "cmp    eax,0x200", "bt     DWORD PTR [rip+0x", "out    0xe7,al",
                           "jmp    0xffffffff81600000", "cmp    eax,0x4745", "bt     eax,0x1e"})
    EXPECT_NE(d.find(want), std::string::npos) << "missing \"" << want << "\" in\n" << d;
  EXPECT_EQ(d.find("(bad)"), std::string::npos) << d;
}

// --- running the stub on the host ---

sigjmp_buf g_jump;
uintptr_t g_fault_rip = 0;

void on_segv(int, siginfo_t*, void* uc) {
  g_fault_rip = static_cast<uintptr_t>(static_cast<ucontext_t*>(uc)->uc_mcontext.gregs[REG_RIP]);
  siglongjmp(g_jump, 1);
}

enum class Outcome { kExit, kPassed, kOther };

class StubRun : public ::testing::Test {
 protected:
  void SetUp() override {
    struct sigaction sa{};
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, &old_segv_);
    sigaction(SIGBUS, &sa, &old_bus_);
  }
  void TearDown() override {
    sigaction(SIGSEGV, &old_segv_, nullptr);
    sigaction(SIGBUS, &old_bus_, nullptr);
    if (page_) munmap(page_, 4096);
  }
  // Maps the stub executable; near the landing function when `near` (direct jump).
  bool load(bool near, StubParams p = {}) {
    auto landing = reinterpret_cast<uintptr_t>(&gears_stub_landing);
    if (near) {
      for (uintptr_t delta = 64u << 20; delta < (1u << 30) && !page_; delta += 64u << 20) {
        void* want = reinterpret_cast<void*>((landing + delta) & ~uintptr_t{0xFFF});
        void* got = mmap(want, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (got != MAP_FAILED) page_ = static_cast<uint8_t*>(got);
      }
    } else {
      void* got = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (got != MAP_FAILED) page_ = static_cast<uint8_t*>(got);
    }
    if (!page_) return false;
    p.stub_gva = reinterpret_cast<uintptr_t>(page_);
    p.original_entry = landing;
    p.allow_indirect = !near;
    auto s = generate_stub(p);
    if (!s) return false;
    stub_ = std::move(*s);
    if (near && !stub_.direct_jump) return false;
    std::memcpy(page_, stub_.bytes.data(), stub_.bytes.size());
    bitmap_.emplace(std::span(page_ + stub_.bitmap_offset, stub_.bitmap_bytes), p.count);
    // Like the guest mapping: the stub cannot write its own page; the host writes through
    // its own view (here: mprotect around updates).
    return mprotect(page_, 4096, PROT_READ | PROT_EXEC) == 0;
  }
  void select(uint32_t nr, bool on) {
    mprotect(page_, 4096, PROT_READ | PROT_WRITE);
    ASSERT_TRUE(bitmap_->set(nr, on));
    mprotect(page_, 4096, PROT_READ | PROT_EXEC);
  }
  Outcome run(uint64_t rax) {
    gears_stub_landed = 0;
    g_fault_rip = 0;
    if (sigsetjmp(g_jump, 1) == 0) {
      // Below the red zone, then `call` the stub as the CPU would jump to LSTAR.
      asm volatile(
          "sub $128, %%rsp\n"
          "call *%1\n"
          "add $128, %%rsp\n"
          : "+a"(rax)
          : "r"(page_)
          : "memory", "cc");
      return gears_stub_landed ? Outcome::kPassed : Outcome::kOther;
    }
    return g_fault_rip == reinterpret_cast<uintptr_t>(page_) + stub_.exit_offset ? Outcome::kExit : Outcome::kOther;
  }

  uint8_t* page_ = nullptr;
  Stub stub_;
  std::optional<SyscallBitmap> bitmap_;
  struct sigaction old_segv_{}, old_bus_{};
};

TEST_F(StubRun, SelectsExactlyTheMarkedNumbers) {
  ASSERT_TRUE(load(false));
  EXPECT_FALSE(stub_.direct_jump);
  EXPECT_EQ(run(39), Outcome::kPassed);
  select(39, true);
  EXPECT_EQ(run(39), Outcome::kExit);
  EXPECT_EQ(run(38), Outcome::kPassed);
  EXPECT_EQ(run(40), Outcome::kPassed);
  // Upper RAX bits do not hide a selected number: the kernel dispatches on EAX as well.
  EXPECT_EQ(run(0xFFFF'FFFF'0000'0027ULL), Outcome::kExit);
  select(511, true);
  EXPECT_EQ(run(511), Outcome::kExit);
  EXPECT_EQ(run(512), Outcome::kPassed);  // outside the table, not special
  EXPECT_EQ(run(0x8000'0000ULL), Outcome::kPassed);
  EXPECT_EQ(run(0xFFFF'FFFFULL), Outcome::kExit);  // bit 30 set: the x32 rule exits
  select(39, false);
  EXPECT_EQ(run(39), Outcome::kPassed);
}

TEST_F(StubRun, HypercallAndX32AlwaysExit) {
  ASSERT_TRUE(load(false));
  EXPECT_EQ(run(0x4745), Outcome::kExit);
  EXPECT_EQ(run(0x4000'0000 + 39), Outcome::kExit);
  EXPECT_EQ(run(0x4744), Outcome::kPassed);
}

TEST_F(StubRun, X32CanBeLeftAlone) {
  StubParams p;
  p.exit_on_x32 = false;
  ASSERT_TRUE(load(false, p));
  EXPECT_EQ(run(0x4000'0000 + 39), Outcome::kPassed);
  EXPECT_EQ(run(0x4745), Outcome::kExit);
}

// The injection engine's exit-all flag: while set, every number exits (selected or not, in
// the table or not); cleared, the selection rules are back.
TEST_F(StubRun, ExitAllFlagStopsEverySyscall) {
  ASSERT_TRUE(load(false));
  ASSERT_NE(stub_.flag_offset, 0u);
  auto set_flag = [&](uint8_t v) {
    mprotect(page_, 4096, PROT_READ | PROT_WRITE);
    page_[stub_.flag_offset] = v;
    mprotect(page_, 4096, PROT_READ | PROT_EXEC);
  };
  set_flag(1);
  EXPECT_EQ(run(39), Outcome::kExit);
  EXPECT_EQ(run(512), Outcome::kExit);
  EXPECT_EQ(run(0x7fff'1234'5000ULL), Outcome::kExit);  // an mmap result re-executed as a number
  set_flag(0);
  EXPECT_EQ(run(39), Outcome::kPassed);
  EXPECT_EQ(run(0x7fff'1234'5000ULL), Outcome::kPassed);
}

TEST_F(StubRun, DirectJumpVariantRuns) {
  if (!load(true)) GTEST_SKIP() << "could not map a page within 2 GiB of the test's code";
  EXPECT_TRUE(stub_.direct_jump);
  EXPECT_EQ(run(1), Outcome::kPassed);
  select(1, true);
  EXPECT_EQ(run(1), Outcome::kExit);
}

}  // namespace
}  // namespace gears::vmm::syscall_exit
