// Machine code of the selective syscall-exit stub: the SYSCALL target (LSTAR) gears-vmm
// installs in the guest. Pure code generation, no KVM; doc/toolset.md has the mechanism.
//
// At the stub the CPU is at CPL0 on the *user* stack with the *user* GS and CR3 (FINDINGS.md):
// the stub touches neither stack nor GS nor any general register; it only clobbers RFLAGS,
// which SYSCALL already saved in R11. It compares the 32-bit syscall number (the kernel
// dispatches on EAX too, so upper RAX bits cannot smuggle a number past the filter):
//
//   entry:  endbr64                     ; F3 0F 1E FA (optional; a NOP without CET-IBT, required
//                                       ;   at a SYSCALL target when the guest enables kernel IBT)
//           cmp  byte [rip+flag], 0     ; 80 3D disp32 00   (optional) the exit-all flag: while the
//           jne  hit                    ; 75 rel8            injection engine borrows a thread,
//                                       ;   every syscall exits (tools/inject/borrow_engine.h)
//           cmp  eax, count             ; 3D imm32
//           jae  high                   ; 73 rel8
//           bt   [rip+bitmap], eax      ; 0F A3 05 disp32
//           jae  orig                   ; 73 rel8   (CF clear: not selected)
//   hit:    out  port, al               ; E6 ib     <- the VMM sees KVM_EXIT_IO here
//   orig:   jmp  original_entry         ; E9 rel32, or FF 25 disp32 (jmp [rip+target])
//   high:   cmp  eax, hypercall_nr      ; 3D imm32  the guest-user hypercall (abi/hypercall.h)
//           je   hit                    ; 74 rel8
//           bt   eax, 30                ; 0F BA E0 1E   x32 ABI numbers (optional)
//           jb   hit                    ; 72 rel8
//           jmp  orig                   ; EB rel8
//           (int3 padding)
//   target: dq original_entry           ; indirect form only
//   flag:   db 0 (+ padding to 8)       ; exit-all flag (non-zero: every syscall exits)
//   bitmap: count bits                  ; SyscallBitmap over these bytes
#pragma once

#include <cstdint>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm::syscall_exit {

// The private port the stub writes to (`out imm8, al` needs a port below 0x100 and no
// register). 0xE0-0xEF has no device on the PC platform the guest sees.
inline constexpr uint8_t kDefaultExitPort = 0xE7;

struct StubParams {
  uint64_t stub_gva = 0;        // where the stub's first byte is mapped in the guest
  uint64_t original_entry = 0;  // the LSTAR value the guest kernel wrote (entry_SYSCALL_64)
  uint32_t count = 512;         // numbers [0, count) are looked up in the bitmap
  uint8_t port = kDefaultExitPort;
  uint32_t hypercall_nr = 0x4745;  // GEARS_SYSCALL_NR: always exits
  bool exit_on_x32 = true;         // numbers with bit 30 (x32 ABI) always exit
  bool allow_indirect = true;      // if the entry is out of rel32 reach, use jmp [rip+target]
  bool endbr64 = true;             // start with ENDBR64 (kernel IBT treats SYSCALL as a branch)
  bool exit_all_flag = true;       // test a flag byte first (the injection engine's exit-all)
};

struct Stub {
  std::vector<uint8_t> bytes;   // code, padding, [target], bitmap (zeroed: nothing selected)
  uint32_t exit_offset = 0;     // offset of the `out`: a KVM_EXIT_IO from RIP stub_gva+this
  uint32_t resume_offset = 0;   // the RIP KVM reports after the `out` (exit_offset + 2)
  uint32_t bitmap_offset = 0;
  uint32_t bitmap_bytes = 0;
  uint32_t flag_offset = 0;     // the exit-all flag byte (0 when exit_all_flag is off)
  bool direct_jump = true;      // false: indirect jmp through the 8-byte target slot
};

// Fails when the stub cannot reach the entry (direct jump out of range and indirect not
// allowed), a parameter is out of range, or the result would not fit in one 4 KiB page.
Expected<Stub> generate_stub(const StubParams& params);

}  // namespace gears::vmm::syscall_exit
