// Malformed gears attributes are errors while Clang parses them (before any gearsc pass).
#include <gears/kernel.h>
#include <gears/service.h>

GEARS_SERVICE("attribute-syntax", "1");

[[gears::vmm("x")]] int with_args() { return 0; } // expected-error {{'vmm' attribute takes no arguments}}

[[gears::guest_user, gears::interpose("libc.so.6", 42)]] int not_string(int fd) { return fd; } // expected-error {{arguments of 'gears::interpose' must be string literals}}

[[gears::guest_kernel, gears::kernel_hook("a", "b")]] void two_hooks(const gears::kernel::Hook&) {} // expected-error {{'kernel_hook' attribute takes no more than 1 argument}}

[[interpose("libc.so.6", "read")]] int unscoped(int fd) { return fd; } // expected-error {{write this attribute as [[gears::interpose]]}}

[[gears::vmm]] int on_variable = 0; // expected-error {{'gears::vmm' attribute only applies to functions}}
