// The chains deploy runs in borrowed guest threads (chain.h): kernel modules in and out, a
// file written or removed, the guest's own process list (/proc), a blocked process nudged,
// and a shared library loaded into / unloaded from a process with its own dynamic loader.
// Each only issues system calls and user-mode calls; results are plain values.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "tools/inject/chain.h"

namespace gears::vmm::inject {

// x86-64 Linux numbers and flags used below.
namespace sys {
inline constexpr uint64_t read = 0, write = 1, close = 3, kill = 62, readlinkat = 267, mkdirat = 258,
                          openat = 257, unlinkat = 263, getdents64 = 217, init_module = 175,
                          delete_module = 176, getpid = 39;
inline constexpr int64_t at_fdcwd = -100;
}  // namespace sys

// "ENOEXEC (Exec format error)" for -ENOEXEC.
std::string errno_text(int64_t negative_errno);

// init_module(image, len, params): 0, or an error naming the kernel's errno.
Chain load_module_chain(ChainContext& cx, std::shared_ptr<const std::vector<uint8_t>> image, std::string params);
// delete_module(name, O_NONBLOCK).
Chain unload_module_chain(ChainContext& cx, std::string name);
// mkdir -p of the parent (one level), then open(O_CREAT|O_TRUNC)/write/close.
Chain write_file_chain(ChainContext& cx, std::string path, std::shared_ptr<const std::vector<uint8_t>> data,
                       uint32_t mode);
Chain remove_file_chain(ChainContext& cx, std::string path);

// One guest process as /proc shows it.
struct GuestProcess {
  int64_t pid = -1;
  std::string exe;                 // readlink /proc/PID/exe
  std::vector<std::string> libs;   // basenames of the files it maps (from /proc/PID/maps)
  uint64_t libc_base = 0;          // where libc.so.6's ELF header is mapped (0: no libc)
};
// Lists user processes (kernel threads have no exe and are left out) into *out.
Chain list_processes_chain(ChainContext& cx, std::shared_ptr<std::vector<GuestProcess>> out);

// SIGSTOP then SIGCONT to `pid`: a thread blocked in an interruptible syscall restarts it,
// executing SYSCALL again, where the engine can borrow it. Refuses to run inside `pid` itself.
Chain kick_chain(ChainContext& cx, int64_t pid);

// What dlopen_chain did: whether the process was wanted, its pid, the handle.
struct DlopenOutcome {
  int64_t pid = -1;
  bool wanted = false;
  uint64_t handle = 0;
};
// In the borrowed process: getpid(), then `claim(pid)` (under the engine's lock) says whether
// this process is a target and gives its libc base; if so dlopen(path, RTLD_NOW) and the
// `attach` symbol if non-empty and present. Result: the handle (> 0), or 0 for a process that
// was not wanted. An attach that returns non-zero is an error; the handle is kept in *out.
using ClaimFn = std::function<std::optional<uint64_t>(int64_t pid)>;
Chain dlopen_chain(ChainContext& cx, ClaimFn claim, std::string path, std::string attach,
                   std::shared_ptr<DlopenOutcome> out);
// `detach` (if present), then dlclose(handle).
Chain dlclose_chain(ChainContext& cx, uint64_t libc_base, uint64_t handle, std::string detach);

// getpid() only: identifies the process behind an address space.
Chain getpid_chain(ChainContext& cx);

// The syscalls at whose entry a thread holds no libc lock (it waits for I/O or time): only
// there is running user code (dlopen) in the thread safe.
bool is_safe_for_user_calls(uint64_t nr);

}  // namespace gears::vmm::inject
