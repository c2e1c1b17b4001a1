// A test library written like a gearsc user half (compare tests/compiler/golden/*/*.user.cpp):
// it interposes getppid and getpgrp, counts the calls that reach it, and exports the linking
// entry points. Built -fvisibility=hidden and dlopen()ed by user_link_test, never linked to it.
#include <gears/user.h>
#include <gears/user_link.h>

#include <unistd.h>

#include <cstddef>

static int calls = 0;

static pid_t counted_getppid() {
  static auto next = gears::user::original<decltype(&counted_getppid)>("getppid");
  ++calls;
  return next ? next() : -1;
}

static pid_t counted_getpgrp() {
  static auto next = gears::user::original<decltype(&counted_getpgrp)>("getpgrp");
  ++calls;
  return next ? next() : -1;
}

extern "C" __attribute__((visibility("hidden"))) pid_t gears_interpose_getppid() { return counted_getppid(); }
extern "C" __attribute__((visibility("default"))) pid_t gears_export_getppid() __asm__("getppid");
extern "C" pid_t gears_export_getppid() { return gears_interpose_getppid(); }

extern "C" __attribute__((visibility("hidden"))) pid_t gears_interpose_getpgrp() { return counted_getpgrp(); }
extern "C" __attribute__((visibility("default"))) pid_t gears_export_getpgrp() __asm__("getpgrp");
extern "C" pid_t gears_export_getpgrp() { return gears_interpose_getpgrp(); }

static const gears::user::link::Interposer interposers[] = {
    {"getppid", reinterpret_cast<const void*>(&gears_interpose_getppid)},
    {"getpgrp", reinterpret_cast<const void*>(&gears_interpose_getpgrp)},
};

extern "C" __attribute__((visibility("default"))) int gears_user_attach_v1(void) {
  return gears::user::link::attach(interposers, sizeof interposers / sizeof interposers[0]);
}
extern "C" __attribute__((visibility("default"))) int gears_user_detach_v1(void) {
  return gears::user::link::detach();
}

// Test hooks.
extern "C" __attribute__((visibility("default"))) int link_test_calls() { return calls; }
extern "C" __attribute__((visibility("default"))) std::size_t link_test_patched() {
  return gears::user::link::the_linker().patched();
}
// A linker with room for one slot, to see a full table undo what it did.
extern "C" __attribute__((visibility("default"))) int link_test_attach_tiny() {
  static gears::user::link::Linker<1> tiny;
  const int rc = tiny.attach(interposers, sizeof interposers / sizeof interposers[0]);
  if (rc == 0) tiny.detach();
  return rc;
}
// What original() finds from a dlopen()ed library, and where this library's own export is.
extern "C" __attribute__((visibility("default"))) void* link_test_original(const char* symbol) {
  return reinterpret_cast<void*>(gears::user::original<void (*)()>(symbol));
}
extern "C" __attribute__((visibility("default"))) const void* link_test_interposer() {
  return reinterpret_cast<const void*>(&gears_interpose_getppid);
}
