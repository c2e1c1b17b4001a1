// gears service annotations: what a service author writes on declarations.
//
//   GEARS_SERVICE("file-audit", "1.0");
//   [[gears::vmm]]          int report(const Event& e);    // runs in gears-vmm
//   [[gears::guest_user]]   ...                             // runs in guest processes
//   [[gears::guest_kernel]] ...                             // runs in the guest kernel
//   [[gears::guest_user, gears::interpose("libc.so.6", "open", "cat", "sh")]]
//                           int my_open(const char*, int, unsigned);   // patch point
//   [[gears::guest_kernel, gears::kernel_hook("do_sys_openat2")]]
//                           void on_open(const gears::kernel::Hook&);  // patch point
//   [[gears::vmm, gears::on_load]] int start(gears::vmm::ServiceHost&); // VMM-half start-up
//   [[gears::guest_kernel, gears::on_load]] int init();                 // kernel-half start-up
//   GEARS_USER_HALF_INSTALL("/usr/lib/.../mca_btl_x.so");  // the user half is a plugin file
//
// gearsc reads these attributes (it registers the gears:: attribute namespace with Clang).
// A plain compiler ignores them: this header silences the "unknown attribute" warnings, so a
// service still compiles as ordinary C++ (e.g. for unit tests of its helpers).
// Reference: doc/sdk.md.
#pragma once

#if defined(__clang__)
#pragma clang diagnostic ignored "-Wunknown-attributes"
#elif defined(__GNUC__)
// GCC 12 has -Wno-attributes=gears:: only on the command line (gears::sdk adds it); the
// pragma form is the whole -Wattributes group.
#pragma GCC diagnostic ignored "-Wattributes"
#endif

#include "gears/abi/hypercall.h"
#include "gears/abi/manifest.h"

namespace gears {

// The service's identity, recorded in the manifest. Exactly one per service source.
struct ServiceInfo {
  const char* name;
  const char* version;
};

}  // namespace gears

// Where deploy puts the guest-user half in the guest, when it is a plugin a guest program loads
// by itself (an Open MPI component, say) rather than a library gears preloads: an absolute
// path. Without it the half goes to /run/gears-<service>.user.so. At most one per service.
#define GEARS_USER_HALF_INSTALL(path) \
  [[gears::user_half_install(path)]] inline constexpr const char* gears_user_half_install = path

#define GEARS_SERVICE(name, version) \
  [[gears::service(name, version)]] inline constexpr ::gears::ServiceInfo gears_service_info{name, version}
