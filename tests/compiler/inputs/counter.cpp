// A small service for the golden tests: every crossing kind (scalar, enum, bool result,
// struct by const reference, struct by reference written back) and a kernel-half caller.
#include <gears/kernel.h>
#include <gears/service.h>

#include <cstdint>

GEARS_SERVICE("counter", "0.1");

enum class Kind : uint32_t { read = 1, write = 2 };

struct Totals {
  uint64_t reads;
  uint64_t writes;
};

static Totals totals;

// Unannotated helper used by the VMM half only.
static void bump(Kind k, uint64_t n) {
  if (k == Kind::read) totals.reads += n;
  else totals.writes += n;
}

[[gears::vmm]] bool add(Kind kind, uint64_t n) {
  bump(kind, n);
  return true;
}

[[gears::vmm]] int snapshot(Totals& out) {
  out = totals;
  return 0;
}

[[gears::vmm]] int64_t compare(const Totals& mine) {
  return static_cast<int64_t>(totals.reads) - static_cast<int64_t>(mine.reads);
}

[[gears::guest_user]] int64_t user_report(uint64_t reads) {
  add(Kind::read, reads);
  Totals t{};
  snapshot(t);
  return compare(t);
}

[[gears::guest_kernel, gears::kernel_hook("vfs_write")]]
void on_write(const gears::kernel::Hook& hook) {
  add(Kind::write, hook.args[2]);
}
