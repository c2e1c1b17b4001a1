// Annotations that make no sense are rejected where they are written.
#include <gears/kernel.h>
#include <gears/service.h>
#include <gears/vmm/service_host.h>

GEARS_SERVICE("bad-annotations", "1");
GEARS_USER_HALF_INSTALL("lib/../plugin.so"); // expected-error {{GEARS_USER_HALF_INSTALL needs an absolute, normalized file path of at most 255 characters}}

[[gears::vmm, gears::guest_user]] int two_halves(); // expected-error {{'two_halves' cannot run in two halves: it is already [[gears::vmm]]}} expected-note {{first half annotation here}}
int two_halves() { return 0; }

[[gears::interpose("libc.so.6", "open")]] int no_half(const char*, int); // expected-error {{'no_half' has a gears annotation but no half}}

[[gears::vmm, gears::interpose("libc.so.6", "close")]] int wrong_half(int fd) { return fd; } // expected-error {{'gears::interpose' needs a [[gears::guest_user]] function}}

[[gears::guest_user, gears::interpose("libc.so.6")]] int no_symbol(int fd) { return fd; } // expected-error {{'gears::interpose' needs a library and a symbol}}


[[gears::guest_kernel, gears::kernel_hook("do_exit")]] int bad_hook(int code) { return code; } // expected-error {{kernel hook handler 'bad_hook' must have type 'void (const gears::kernel::Hook &)'}}

[[gears::vmm, gears::on_load]] void bad_start() {} // expected-error {{[[gears::on_load]] needs a [[gears::vmm]] function of type 'int (gears::vmm::ServiceHost &)' or a [[gears::guest_kernel]] one of type 'int ()'}}

[[gears::guest_kernel, gears::on_load]] int kernel_start() { return 0; } // expected-note 2 {{the first one is here}}
[[gears::guest_kernel, gears::on_load]] int kernel_start_again() { return 0; } // expected-error {{a second [[gears::on_load]] function for the guest_kernel half}}
[[gears::guest_kernel, gears::on_load]] void bad_kernel_start() {} // expected-error {{[[gears::on_load]] on a [[gears::guest_kernel]] function needs type 'int ()'}} expected-error {{a second [[gears::on_load]] function for the guest_kernel half}}
[[gears::guest_kernel, gears::on_unload]] void kernel_stop() {} // expected-note 2 {{the first one is here}}
[[gears::guest_kernel, gears::on_unload]] void kernel_stop_again() {} // expected-error {{a second [[gears::on_unload]] function}}
[[gears::vmm, gears::on_unload]] void vmm_stop() {} // expected-error {{[[gears::on_unload]] needs a [[gears::guest_kernel]] function of type 'void ()'}} expected-error {{a second [[gears::on_unload]] function}}

[[gears::guest_user]] int declared_only(int); // expected-error {{[[gears::guest_user]] function 'declared_only' has no definition in the service file}}




namespace inner {
[[gears::vmm]] int nested() { return 0; } // expected-error {{gears annotations apply only to declarations at the top level of the service file}}
}  // namespace inner
