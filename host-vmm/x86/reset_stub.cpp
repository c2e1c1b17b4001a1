#include "x86/reset_stub.h"

#include <array>

#include "x86/layout.h"

namespace gears::vmm::x86 {

Expected<void> write_reset_stub(GuestMemory& mem) {
  static_assert(kAcpiResetPort <= 0xffff);
  const std::array<uint8_t, 9> code = {
      0xb0, kAcpiResetValue,                                  // mov al, reset value
      0xba, kAcpiResetPort & 0xff, kAcpiResetPort >> 8,      // mov dx, reset port
      0xee,                                                   // out dx, al
      0xf4,                                                   // hlt
      0xeb, 0xfd,                                             // jmp back to hlt
  };
  return mem.write_obj(kResetVectorAddr, code);
}

}  // namespace gears::vmm::x86
