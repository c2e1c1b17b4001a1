// gears/user_link.h: a user half dlopen()ed into this running process rebinds the calls of
// the binary and its libraries to its interposers on gears_user_attach_v1, and lets go on
// gears_user_detach_v1. The half (user_link/half.cpp) counts the calls that reach it.
//   - this binary calls getppid/getpgrp through its lazy PLT (JUMP_SLOT, writable .got.plt);
//   - libuser_link_now.so calls them through GOT loads (-fno-plt: GLOB_DAT) in RELRO pages
//     (-z relro -z now);
//   - libuser_link_lazy.so calls them through a lazy PLT, getpgrp for the first time while
//     attached (an unresolved slot).
#include <dlfcn.h>
#include <gears/user_link.h>
#include <gtest/gtest.h>
#include <link.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

extern "C" pid_t now_getppid();
extern "C" pid_t now_getpgrp();
extern "C" pid_t lazy_getppid();
extern "C" pid_t lazy_getpgrp();

namespace {

const pid_t real_ppid = static_cast<pid_t>(syscall(SYS_getppid));
const pid_t real_pgrp = static_cast<pid_t>(syscall(SYS_getpgid, 0));

// Keeps the compiler from calling anything but the PLT entry of the real symbol.
pid_t (*volatile through_plt_getppid)() = nullptr;

class UserLink : public ::testing::Test {
 protected:
  void SetUp() override {
    handle_ = dlopen(GEARS_USER_LINK_HALF, RTLD_NOW);  // as the VMM injects it: local scope
    ASSERT_NE(handle_, nullptr) << dlerror();
    attach_ = sym<int (*)()>("gears_user_attach_v1");
    detach_ = sym<int (*)()>("gears_user_detach_v1");
    calls_ = sym<int (*)()>("link_test_calls");
    patched_ = sym<std::size_t (*)()>("link_test_patched");
  }
  void TearDown() override {
    if (!handle_) return;
    detach_();
    EXPECT_EQ(dlclose(handle_), 0) << dlerror();
    // Gone for good (a hidden linker leaves no STB_GNU_UNIQUE object pinning it).
    EXPECT_EQ(dlopen(GEARS_USER_LINK_HALF, RTLD_NOW | RTLD_NOLOAD), nullptr);
  }
  template <class F>
  F sym(const char* name) {
    void* p = dlsym(handle_, name);
    EXPECT_NE(p, nullptr) << name;
    return reinterpret_cast<F>(p);
  }
  // Calls `fn`, checks its result, returns how many calls reached the half.
  int intercepted(pid_t (*fn)(), pid_t want) {
    const int before = calls_();
    EXPECT_EQ(fn(), want);
    return calls_() - before;
  }

  void* handle_ = nullptr;
  int (*attach_)() = nullptr;
  int (*detach_)() = nullptr;
  int (*calls_)() = nullptr;
  std::size_t (*patched_)() = nullptr;
};

// 1 if a page of the PT_GNU_RELRO range (as glibc protects it) of the loaded object whose name
// contains `name` is writable in /proc/self/maps, 0 if none is, -1 if there is no such range.
int relro_writable(const char* name) {
  struct Range {
    const char* name;
    std::uintptr_t lo, hi;
  } range{name, 0, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, std::size_t, void* data) {
        auto& r = *static_cast<Range*>(data);
        if (!info->dlpi_name || !std::strstr(info->dlpi_name, r.name)) return 0;
        const auto page = static_cast<std::uintptr_t>(sysconf(_SC_PAGESIZE));
        for (int i = 0; i < info->dlpi_phnum; ++i)
          if (info->dlpi_phdr[i].p_type == PT_GNU_RELRO) {
            const std::uintptr_t start = info->dlpi_addr + info->dlpi_phdr[i].p_vaddr;
            r.lo = start & ~(page - 1);
            r.hi = (start + info->dlpi_phdr[i].p_memsz) & ~(page - 1);
          }
        return 1;
      },
      &range);
  if (range.lo >= range.hi) return -1;
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line)) {
    std::uintptr_t lo = 0, hi = 0;
    char perms[5] = {};
    if (std::sscanf(line.c_str(), "%" SCNxPTR "-%" SCNxPTR " %4s", &lo, &hi, perms) != 3) continue;
    if (lo < range.hi && hi > range.lo && perms[1] == 'w') return 1;
  }
  return 0;
}

pid_t binary_getppid() { return getppid(); }
pid_t binary_getpgrp() { return getpgrp(); }

TEST_F(UserLink, LazyFirstCallWhileAttachedIsInterceptedAndResolvesAfterDetach) {
  ASSERT_EQ(attach_(), 0);
  EXPECT_EQ(intercepted(&lazy_getpgrp, real_pgrp), 1);
  ASSERT_EQ(detach_(), 0);
  // The PLT stub is back in the slot: the next call resolves lazily, to libc.
  EXPECT_EQ(intercepted(&lazy_getpgrp, real_pgrp), 0);
  EXPECT_EQ(intercepted(&lazy_getpgrp, real_pgrp), 0);
}

TEST_F(UserLink, AttachInterceptsTheBinaryAndItsLibrariesDetachLetsGo) {
  // Resolve every slot first: attach must rebind resolved slots too.
  EXPECT_EQ(intercepted(&binary_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&lazy_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&now_getpgrp, real_pgrp), 0);

  ASSERT_EQ(attach_(), 0);
  EXPECT_GE(patched_(), 5u);  // at least getppid x3, getpgrp x2
  EXPECT_EQ(intercepted(&binary_getppid, real_ppid), 1);  // JUMP_SLOT, writable
  EXPECT_EQ(intercepted(&binary_getpgrp, real_pgrp), 1);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 1);  // GLOB_DAT in RELRO
  EXPECT_EQ(intercepted(&now_getpgrp, real_pgrp), 1);
  EXPECT_EQ(intercepted(&lazy_getppid, real_ppid), 1);  // JUMP_SLOT, lazy
  through_plt_getppid = &getppid;  // the binary's own GOT entry for getppid: now the half
  EXPECT_EQ(intercepted(through_plt_getppid, real_ppid), 1);

  EXPECT_EQ(attach_(), -EALREADY);

  ASSERT_EQ(detach_(), 0);
  EXPECT_EQ(patched_(), 0u);
  EXPECT_EQ(intercepted(&binary_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&binary_getpgrp, real_pgrp), 0);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&now_getpgrp, real_pgrp), 0);
  EXPECT_EQ(intercepted(&lazy_getppid, real_ppid), 0);
  through_plt_getppid = &getppid;
  EXPECT_EQ(intercepted(through_plt_getppid, real_ppid), 0);
  EXPECT_EQ(detach_(), 0);  // twice: nothing left to do
}

TEST_F(UserLink, RelroStaysReadOnly) {
  ASSERT_EQ(relro_writable("libuser_link_now.so"), 0);
  ASSERT_EQ(attach_(), 0);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 1);  // the slot inside RELRO was written
  EXPECT_EQ(relro_writable("libuser_link_now.so"), 0);  // and its page protected again
  ASSERT_EQ(detach_(), 0);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 0);
  EXPECT_EQ(relro_writable("libuser_link_now.so"), 0);
}

TEST_F(UserLink, FullTableUndoesEverything) {
  EXPECT_EQ(sym<int (*)()>("link_test_attach_tiny")(), -ENOSPC);
  EXPECT_EQ(intercepted(&binary_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&now_getppid, real_ppid), 0);
  EXPECT_EQ(intercepted(&now_getpgrp, real_pgrp), 0);
  EXPECT_EQ(intercepted(&lazy_getppid, real_ppid), 0);
  // The full-size linker still works afterwards.
  ASSERT_EQ(attach_(), 0);
  EXPECT_EQ(intercepted(&binary_getppid, real_ppid), 1);
  ASSERT_EQ(detach_(), 0);
}

TEST_F(UserLink, OriginalFromADlopenedHalfIsLibcsDefinition) {
  void* libc_getppid = dlsym(RTLD_DEFAULT, "getppid");
  ASSERT_NE(libc_getppid, nullptr);
  auto original = sym<void* (*)(const char*)>("link_test_original");
  EXPECT_EQ(original("getppid"), libc_getppid);
  EXPECT_NE(original("getppid"), sym<const void* (*)()>("link_test_interposer")());
  EXPECT_NE(original("getppid"), dlsym(handle_, "getppid"));  // not the half's own export
  EXPECT_EQ(original("gears_no_such_symbol"), nullptr);
}

// The loader may or may not have relocated the dynamic section's pointers (glibc does for most
// objects, not for the vDSO; other loaders never do): both readings must land in the object.
TEST(UserLinkObject, DynamicPointersRelocatedOrNot) {
  const ElfW(Addr) base = 0x7f0000000000;
  ElfW(Phdr) phdrs[3] = {};
  phdrs[0].p_type = PT_LOAD;  // text
  phdrs[0].p_vaddr = 0;
  phdrs[0].p_memsz = 0x2000;
  phdrs[0].p_flags = PF_R | PF_X;
  phdrs[1].p_type = PT_LOAD;  // data: RELRO .got, then .got.plt
  phdrs[1].p_vaddr = 0x3e00;
  phdrs[1].p_memsz = 0x1400;
  phdrs[1].p_flags = PF_R | PF_W;
  phdrs[2].p_type = PT_GNU_RELRO;
  phdrs[2].p_vaddr = 0x3e00;
  phdrs[2].p_memsz = 0x1280;  // glibc protects [0x3000, 0x5000): start and end aligned down
  dl_phdr_info info{};
  info.dlpi_addr = base;
  info.dlpi_phdr = phdrs;
  info.dlpi_phnum = 3;
  const gears::user::link::detail::Object object(info);

  EXPECT_EQ(object.pointer(0x1100), base + 0x1100);         // unrelocated
  EXPECT_EQ(object.pointer(base + 0x1100), base + 0x1100);  // relocated
  EXPECT_EQ(object.pointer(0x9000), 0u);                    // neither: ignored

  EXPECT_EQ(object.protection(base + 0x100), PROT_READ | PROT_EXEC);
  EXPECT_EQ(object.protection(base + 0x3f00), PROT_READ);  // RELRO pages
  EXPECT_EQ(object.protection(base + 0x4ff8), PROT_READ);
  EXPECT_EQ(object.protection(base + 0x5008), PROT_READ | PROT_WRITE);  // RELRO's tail page stays writable
  EXPECT_EQ(object.protection(base + 0x2800), -1);  // between segments
}

}  // namespace
