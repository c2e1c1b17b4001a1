// The VMM-half plugin ABI: the one C entry point a service plugin exports and the descriptor
// it returns. gears-vmm dlopen()s the plugin, calls GEARS_PLUGIN_ENTRY, checks abi_version and
// the manifest, then calls start() and registers each hypercall.
#pragma once

#include <cstdint>

#include "gears/abi/manifest.h"
#include "gears/vmm/service_host.h"

namespace gears::vmm {

inline constexpr std::uint32_t kPluginAbiVersion = 1;

struct PluginHypercall {
  std::uint32_t number;  // GEARS_HC_MAKE(service id, index)
  const char* name;      // the [[gears::vmm]] function
  std::int64_t (*handler)(GuestContext&, const HypercallArgs&);
};

struct PluginDescriptor {
  std::uint32_t abi_version;  // kPluginAbiVersion
  const char* service_name;
  const char* service_version;
  std::uint16_t service_id;
  const char* manifest_json;  // the same manifest as in the bundle
  const PluginHypercall* hypercalls;
  std::uint32_t hypercall_count;
  // Service start-up ([[gears::on_load]]), or nullptr. Non-zero result: refuse the service.
  int (*start)(ServiceHost&);
};

}  // namespace gears::vmm

// extern "C" const gears::vmm::PluginDescriptor* gears_service_plugin_v1(void);
using gears_service_plugin_v1_fn = const gears::vmm::PluginDescriptor* (*)();
