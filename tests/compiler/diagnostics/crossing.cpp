// What cannot cross between a guest half and the VMM half is rejected at the parameter.
#include <gears/service.h>

#include <string>

GEARS_SERVICE("crossing", "1");

struct Plain { int a; char b[8]; };
struct Owning { std::string s; }; // expected-note {{'Owning' declared here}} expected-note@*:* {{'basic_string<char>' declared here}}

[[gears::vmm]] int takes_pointer(const char* path) { return path ? 1 : 0; } // expected-error {{parameter 'path' of type 'const char *' cannot cross to the VMM half: a pointer names memory of the calling guest half}} expected-note {{pass a trivially-copyable struct by reference instead}}
[[gears::vmm]] int takes_string(std::string s) { return static_cast<int>(s.size()); } // expected-error {{parameter 's' of type 'std::string' (aka 'basic_string<char>') cannot cross halves: it is not trivially copyable and default-constructible}}
[[gears::vmm]] int takes_owning(const Owning& o) { return static_cast<int>(o.s.size()); } // expected-error {{parameter 'o' of type 'const Owning &' cannot cross halves}}
[[gears::vmm]] int takes_double(double d) { return static_cast<int>(d); } // expected-error {{parameter 'd' of type 'double' cannot cross to the VMM half; use an integer, an enum or a trivially-copyable struct}}
[[gears::vmm]] Plain returns_struct() { return Plain{}; } // expected-error {{result type 'Plain' of 'returns_struct' cannot cross from the VMM half}} expected-note {{'returns_struct' is called from the guest_user half}}
[[gears::vmm]] int five_regs(const Plain& a, const Plain& b, int c) { return a.a + b.a + c; }
[[gears::vmm]] int fine(const Plain& p, int x) { return p.a + x; }
[[gears::vmm]] int many(const Plain& a, const Plain& b, int c, int d) { return a.a + b.a + c + d; } // expected-error {{'many' needs 6 argument registers; a hypercall has 5 (a struct takes two): group the arguments in a struct}}

[[gears::guest_user]] int user_side() { // expected-note {{'user_side' is placed in the guest_user half here}}
  Plain p{};
  std::string s;
  takes_pointer("x");
  takes_string(s);
  takes_owning(Owning{});
  takes_double(1.0);
  (void)returns_struct();
  five_regs(p, p, 1);
  many(p, p, 1, 2);
  return fine(p, 2);
}

[[gears::guest_kernel]] int kernel_side() { // expected-note {{'kernel_side' is placed in the guest_kernel half here}}
  return user_side(); // expected-error {{'user_side' runs in the guest_user half and cannot be called from the guest_kernel half}}
}

[[gears::vmm]] int vmm_side() {
  return kernel_side(); // expected-error {{'kernel_side' runs in the guest_kernel half and cannot be called from the vmm half}}
}
