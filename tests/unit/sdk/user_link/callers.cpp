// Callers of the interposed symbols in shared libraries the test binary links against, built
// twice: CALLERS_NOW with -z relro -z now -fno-plt (GLOB_DAT slots in read-only RELRO pages),
// CALLERS_LAZY with -z lazy (JUMP_SLOT slots still pointing at the PLT until the first call).
#include <unistd.h>

#if defined(CALLERS_NOW)
#define CALLER(name) now_##name
#else
#define CALLER(name) lazy_##name
#endif

extern "C" __attribute__((visibility("default"))) pid_t CALLER(getppid)() { return getppid(); }
// The tests call this one first while attached (lazy: its slot is still unresolved then).
extern "C" __attribute__((visibility("default"))) pid_t CALLER(getpgrp)() { return getpgrp(); }
