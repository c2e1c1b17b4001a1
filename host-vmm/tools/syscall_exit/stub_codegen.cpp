#include "tools/syscall_exit/stub_codegen.h"

#include <cstdio>
#include <cstring>

namespace gears::vmm::syscall_exit {

namespace {

// A few bytes of x86 with forward references patched at the end: just enough assembler.
class Emitter {
 public:
  uint32_t here() const { return static_cast<uint32_t>(b_.size()); }
  void byte(uint8_t v) { b_.push_back(v); }
  void bytes(std::initializer_list<uint8_t> v) { b_.insert(b_.end(), v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; ++i) byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  // A rel8 whose target is known later: returns the position of the displacement byte.
  uint32_t rel8_slot() {
    byte(0);
    return here() - 1;
  }
  uint32_t rel32_slot() {
    u32(0);
    return here() - 4;
  }
  // Displacements count from the end of the field (the end of the instruction in every use here).
  bool patch8(uint32_t slot, uint32_t target) {
    int64_t d = static_cast<int64_t>(target) - static_cast<int64_t>(slot + 1);
    if (d < -128 || d > 127) return false;
    b_[slot] = static_cast<uint8_t>(static_cast<int8_t>(d));
    return true;
  }
  void patch32(uint32_t slot, int64_t disp) {
    auto v = static_cast<uint32_t>(static_cast<int32_t>(disp));
    std::memcpy(&b_[slot], &v, 4);
  }
  std::vector<uint8_t> take() { return std::move(b_); }

 private:
  std::vector<uint8_t> b_;
};

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

}  // namespace

Expected<Stub> generate_stub(const StubParams& p) {
  if (p.count == 0 || p.count > 8 * 2048)
    return fail("syscall table size " + std::to_string(p.count) + " is out of range (1..16384)");
  if (p.hypercall_nr < p.count)
    return fail("hypercall syscall number " + std::to_string(p.hypercall_nr) + " lies inside the bitmap's range");

  Stub s;
  Emitter e;
  if (p.endbr64) e.bytes({0xF3, 0x0F, 0x1E, 0xFA});
  // cmp byte [rip+flag], 0 ; jne hit
  uint32_t flag_disp = 0, to_hit_all = 0;
  if (p.exit_all_flag) {
    e.bytes({0x80, 0x3D});
    flag_disp = e.rel32_slot();
    e.byte(0x00);
    e.byte(0x75);
    to_hit_all = e.rel8_slot();
  }
  // entry: cmp eax, count ; jae high
  e.byte(0x3D);
  e.u32(p.count);
  e.byte(0x73);
  const uint32_t to_high = e.rel8_slot();
  // bt [rip+bitmap], eax ; jae orig
  e.bytes({0x0F, 0xA3, 0x05});
  const uint32_t bitmap_disp = e.rel32_slot();
  const uint32_t after_bt = e.here();
  e.byte(0x73);
  const uint32_t to_orig = e.rel8_slot();
  // hit: out port, al
  const uint32_t hit = e.here();
  if (p.exit_all_flag && !e.patch8(to_hit_all, hit)) return fail("stub layout error (exit-all)");
  s.exit_offset = e.here();
  e.bytes({0xE6, p.port});
  s.resume_offset = e.here();
  // orig: jmp original_entry
  const uint32_t orig = e.here();
  const int64_t direct_disp = static_cast<int64_t>(p.original_entry - (p.stub_gva + orig + 5));
  s.direct_jump = direct_disp >= INT32_MIN && direct_disp <= INT32_MAX;
  uint32_t target_disp = 0;
  if (s.direct_jump) {
    e.byte(0xE9);
    e.u32(static_cast<uint32_t>(static_cast<int32_t>(direct_disp)));
  } else {
    if (!p.allow_indirect)
      return fail("stub at " + hex(p.stub_gva) + " is more than 2 GiB from the syscall entry " +
                  hex(p.original_entry) + ": a direct jmp cannot reach it");
    e.bytes({0xFF, 0x25});
    target_disp = e.rel32_slot();
  }
  const uint32_t after_jmp = e.here();
  // high: cmp eax, hypercall_nr ; je hit ; [bt eax, 30 ; jb hit] ; jmp orig
  if (!e.patch8(to_high, e.here())) return fail("stub layout error (high)");
  e.byte(0x3D);
  e.u32(p.hypercall_nr);
  e.byte(0x74);
  if (!e.patch8(e.rel8_slot(), hit)) return fail("stub layout error (je)");
  if (p.exit_on_x32) {
    e.bytes({0x0F, 0xBA, 0xE0, 0x1E});
    e.byte(0x72);
    if (!e.patch8(e.rel8_slot(), hit)) return fail("stub layout error (jb)");
  }
  e.byte(0xEB);
  if (!e.patch8(e.rel8_slot(), orig)) return fail("stub layout error (jmp)");
  if (!e.patch8(to_orig, orig)) return fail("stub layout error (jae)");

  while (e.here() % 8) e.byte(0xCC);  // int3: nothing falls through into data
  if (!s.direct_jump) {
    e.patch32(target_disp, static_cast<int64_t>(e.here()) - after_jmp);
    e.u64(p.original_entry);
  }
  if (p.exit_all_flag) {
    // RIP-relative: from the end of the cmp (after its imm8).
    s.flag_offset = e.here();
    e.patch32(flag_disp, static_cast<int64_t>(s.flag_offset) - (flag_disp + 5));
    e.byte(0);
    while (e.here() % 8) e.byte(0);
  }
  s.bitmap_offset = e.here();
  s.bitmap_bytes = (p.count + 7) / 8;
  e.patch32(bitmap_disp, static_cast<int64_t>(s.bitmap_offset) - after_bt);
  for (uint32_t i = 0; i < s.bitmap_bytes; ++i) e.byte(0);
  s.bytes = e.take();
  if (s.bytes.size() > 4096) return fail("syscall stub of " + std::to_string(s.bytes.size()) + " bytes exceeds one page");
  return s;
}

}  // namespace gears::vmm::syscall_exit
