// The guest-kernel half: no exceptions, RTTI, global constructors, libc/libstdc++ or floating
// point; each violation is reported at the line that has it.
#include <gears/kernel.h>
#include <gears/service.h>

#include <cstdint>
#include <cstring>
#include <typeinfo>

GEARS_SERVICE("kernel-subset", "1");

struct Base { virtual ~Base() = default; };
struct Derived : Base {};

struct Counter {
  Counter() : n(std::strlen("x")) {} // expected-error {{'strlen' is not available in the guest-kernel half}} expected-note@*:* {{declared here}}
  unsigned long n;
};

static Counter global_counter; // expected-error {{global 'global_counter' needs a constructor at load time}}
static unsigned long fine_counter = 0;

static int helper(Base* b) {
  if (dynamic_cast<Derived*>(b)) return 1; // expected-error {{dynamic_cast needs RTTI}}
  return typeid(*b) == typeid(Base) ? 2 : 3; // expected-error 2 {{typeid needs RTTI}} expected-error {{'std::type_info::operator==' is not available}} expected-note@*:* {{declared here}}
}

[[gears::guest_kernel, gears::kernel_hook("do_exit")]]
void on_exit(const gears::kernel::Hook& hook) {
  static Counter per_hook; // expected-error {{static local 'per_hook' needs thread-safe initialization}}
  std::uint32_t x = hook.pid; // expected-error {{'std::uint32_t' is not available in the guest-kernel half; use 'uint32_t'}}
  double ratio = x / 2.0; // expected-error {{floating point is not available in the guest-kernel half}}
  int* p = new int(3); // expected-error {{operator new is not available in the guest-kernel half}}
  delete p; // expected-error {{operator delete is not available in the guest-kernel half}}
  try { // expected-error {{exceptions are not available in the guest-kernel half}}
    throw 1; // expected-error {{exceptions are not available in the guest-kernel half}}
  } catch (...) {
  }
  fine_counter += helper(nullptr) + per_hook.n + global_counter.n + static_cast<unsigned long>(ratio); // expected-error {{floating point}}
}
