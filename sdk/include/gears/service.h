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

#define GEARS_SERVICE(name, version) \
  [[gears::service(name, version)]] inline constexpr ::gears::ServiceInfo gears_service_info{name, version}
