// A service's VMM half loaded into gears-vmm: the plugin bytes from the bundle go to a memfd
// (no file on the host's disk), dlopen("/proc/self/fd/N", RTLD_NOW | RTLD_LOCAL), then the
// GEARS_PLUGIN_ENTRY function gives the descriptor. dlclose when the last reference goes:
// handlers registered elsewhere hold a reference, so plugin code is never unmapped while a
// vCPU thread runs it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>

#include "gears/expected.h"
#include "gears/vmm/plugin.h"

namespace gears::vmm::deploy {

class PluginLibrary {
 public:
  static Expected<std::shared_ptr<PluginLibrary>> open(std::span<const uint8_t> image, const std::string& service);
  // A descriptor that lives in this process already (tests, built-in services): nothing to close.
  static std::shared_ptr<PluginLibrary> of_descriptor(const PluginDescriptor* descriptor);
  ~PluginLibrary();
  PluginLibrary(const PluginLibrary&) = delete;
  PluginLibrary& operator=(const PluginLibrary&) = delete;

  const PluginDescriptor& descriptor() const { return *descriptor_; }

 private:
  PluginLibrary() = default;
  void* handle_ = nullptr;
  const PluginDescriptor* descriptor_ = nullptr;
};

// How the manager loads VMM halves (PluginLibrary::open; tests substitute descriptors).
using PluginOpener =
    std::function<Expected<std::shared_ptr<PluginLibrary>>(std::span<const uint8_t> image, const std::string& service)>;

}  // namespace gears::vmm::deploy
