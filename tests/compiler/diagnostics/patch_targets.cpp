// Patch points must name something that exists, with a handler of the right type.
// Run with --kernel-symbols=kernel_symbols.txt.
#include <gears/kernel.h>
#include <gears/service.h>

#include <fcntl.h>
#include <unistd.h>

GEARS_SERVICE("patch-targets", "1");

[[gears::guest_user, gears::interpose("libc.so.6", "opne")]] int typo(const char* p, int f) { return p ? f : 0; } // expected-error {{interposed symbol 'opne' is not declared; include the header of 'libc.so.6' that declares it}}

[[gears::guest_user, gears::interpose("libc.so.6", "close")]] long wrong_type(int fd) { return fd; } // expected-error {{handler 'wrong_type' of type 'long (int)' does not match interposed 'close' of type 'int (int)'}} expected-note@*:* {{'close' declared here}}

[[gears::guest_user, gears::interpose("libc.so.6", "open")]] int first(const char* p, int f) { return p ? f : 0; } // expected-note {{previous patch point here}}
[[gears::guest_user, gears::interpose("libc.so.6", "open")]] int second(const char* p, int f) { return p ? f : 0; } // expected-error {{'open' is already patched by 'first'}}

[[gears::guest_kernel, gears::kernel_hook("do_sys_opne")]] void no_such_hook(const gears::kernel::Hook&) {} // expected-error {{kernel hook target 'do_sys_opne' is not a symbol of the guest kernel}}
[[gears::guest_kernel, gears::kernel_hook("do_sys_openat2")]] void good_hook(const gears::kernel::Hook&) {}
