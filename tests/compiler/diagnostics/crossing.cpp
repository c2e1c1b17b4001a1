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

// No pointer crosses inside a struct either, however deep: fields, nested structs, arrays,
// unions, base classes, function and member pointers; the message names the field's path.
struct WithName { int pid; const char* name; }; // expected-note 2 {{'name' declared here; carry the data itself (an array, an offset or an id) instead}}
struct Inner { int x; void (*callback)(int); }; // expected-note {{'callback' declared here}}
struct Outer { int a; Inner inner[2]; };
union Either { long value; int* where; }; // expected-note {{'where' declared here}}
struct HasUnion { Either e; };
struct Base { Plain* link; }; // expected-note {{'link' declared here}}
struct Derived : Base { int y; };
struct HasMember { int Plain::*which; }; // expected-note {{'which' declared here}}
struct Fine { int a[4]; Plain p; char text[32]; };

[[gears::vmm]] int in_name(const WithName& ev) { return ev.pid; } // expected-error {{parameter 'ev' of type 'const WithName &' cannot cross to the VMM half: 'ev.name' is of pointer type 'const char *', an address in the calling guest half that means nothing in the VMM}}
[[gears::vmm]] int in_nested(const Outer& o) { return o.a; } // expected-error {{'o.inner[].callback' is of pointer type 'void (*)(int)'}}
[[gears::vmm]] int in_union(HasUnion u) { return static_cast<int>(u.e.value); } // expected-error {{'u.e.where' is of pointer type 'int *'}}
[[gears::vmm]] int in_base(const Derived& d) { return d.y; } // expected-error {{'d.link' is of pointer type 'Plain *'}}
[[gears::vmm]] int in_member(const HasMember& m) { return m.which ? 1 : 0; } // expected-error {{'m.which' is of pointer type 'int Plain::*'}}
[[gears::vmm]] int out_name(WithName& ev) { ev.name = nullptr; return 0; } // expected-error {{parameter 'ev' of type 'WithName &' cannot cross halves: 'ev.name' is of pointer type 'const char *', and the VMM half would write a host address back into guest memory}}
[[gears::vmm]] int fine_nested(const Fine& f) { return f.a[0]; }

[[gears::guest_user]] int user_structs() {
  WithName w{};
  HasUnion u{};
  Derived d{};
  HasMember m{};
  Outer o{};
  Fine f{};
  return in_name(w) + in_nested(o) + in_union(u) + in_base(d) + in_member(m) + out_name(w) + fine_nested(f);
}
