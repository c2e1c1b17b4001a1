#include "tools/introspect/page_walk.h"

#include <cstdio>

namespace gears::vmm::introspect {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

namespace {

struct Level {
  const char* name;  // entry name, as in the SDM
  unsigned shift;    // bits of the address below this level's index
  bool huge_allowed; // PS may end the walk here
};
constexpr Level kLevels[] = {
    {"PML4E", 39, false},
    {"PDPTE", 30, true},
    {"PDE", 21, true},
    {"PTE", 12, false},
};

}  // namespace

Expected<Translation> translate(const GuestMemory& mem, uint64_t cr3, uint64_t gva, Access access) {
  auto where = [&] { return "guest address " + hex(gva) + " "; };
  auto in_cr3 = [&] { return " in CR3 " + hex(cr3); };
  if (!is_canonical(gva)) return fail(where() + "is not canonical");

  uint64_t table = cr3_table_base(cr3);
  bool writable = true, user = true, executable = true;
  for (const Level& lv : kLevels) {
    uint64_t index = (gva >> lv.shift) & 0x1FF;
    uint64_t entry_gpa = table + index * 8;
    auto entry = mem.read_obj<uint64_t>(entry_gpa);
    if (!entry)
      return fail(where() + "not translatable: " + lv.name + " at " + hex(entry_gpa) +
                  " is outside guest RAM" + in_cr3());
    uint64_t e = *entry;
    if (!(e & kPtePresent)) return fail(where() + "not mapped (" + lv.name + " not present)" + in_cr3());
    writable = writable && (e & kPteWrite);
    user = user && (e & kPteUser);
    executable = executable && !(e & kPteNx);

    bool leaf = lv.shift == 12;
    if (e & kPteHuge) {
      if (!lv.huge_allowed)
        return fail(where() + "not translatable: " + lv.name + " " + hex(e) + " has the reserved PS bit" +
                    in_cr3());
      leaf = true;
    }
    if (!leaf) {
      table = e & kPteAddrMask;
      continue;
    }

    uint64_t page_size = 1ULL << lv.shift;
    // A huge entry's frame is aligned to its size; bits 12..shift-1 hold PAT and reserved bits.
    uint64_t frame = e & kPteAddrMask & ~(page_size - 1);
    Translation t{frame | (gva & (page_size - 1)), page_size, writable, user, executable};

    const char* denied = nullptr;
    if (access.mode == Access::Mode::kUser && !t.user) denied = "a kernel page, user access";
    else if (access.kind == Access::Kind::kWrite && !t.writable &&
             (access.mode == Access::Mode::kUser || access.write_protect))
      denied = "read-only, write access";
    else if (access.kind == Access::Kind::kExecute && !t.executable) denied = "no-execute, execute access";
    if (denied) return fail(where() + "denied (" + denied + ")" + in_cr3());
    return t;
  }
  return fail(where() + "not translatable" + in_cr3());  // unreachable: the PTE level is a leaf
}

}  // namespace gears::vmm::introspect
