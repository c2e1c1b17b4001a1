// The x86-64 Linux system-call numbers and clone flags the process tracker interprets
// (arch/x86/entry/syscalls/syscall_64.tbl, include/uapi/linux/sched.h). Stable kernel ABI.
#pragma once

#include <cstdint>

namespace gears::vmm::proctrack::linux_x86_64 {

inline constexpr uint32_t kBrk = 12;
inline constexpr uint32_t kGetpid = 39;
inline constexpr uint32_t kClone = 56;
inline constexpr uint32_t kFork = 57;
inline constexpr uint32_t kVfork = 58;
inline constexpr uint32_t kExecve = 59;
inline constexpr uint32_t kExit = 60;
inline constexpr uint32_t kGetppid = 110;
inline constexpr uint32_t kExitGroup = 231;
inline constexpr uint32_t kArchPrctl = 158;
inline constexpr uint32_t kExecveat = 322;
inline constexpr uint32_t kClone3 = 435;

inline constexpr uint64_t kCloneVm = 0x100;
inline constexpr uint64_t kCloneVfork = 0x4000;
inline constexpr uint64_t kCloneThread = 0x10000;

}  // namespace gears::vmm::proctrack::linux_x86_64
