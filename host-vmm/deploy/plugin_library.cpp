#include "deploy/plugin_library.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace gears::vmm::deploy {

namespace {

Expected<void> write_all(int fd, std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail_errno("writing the VMM half to a memfd", n < 0 ? errno : EIO);
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace

Expected<std::shared_ptr<PluginLibrary>> PluginLibrary::open(std::span<const uint8_t> image, const std::string& service) {
  const std::string memfd_name = "gears:" + service + ".vmm.so";
  const int fd = ::memfd_create(memfd_name.c_str(), MFD_CLOEXEC);
  if (fd < 0) return fail_errno("memfd_create for the VMM half");
  if (auto w = write_all(fd, image); !w) {
    ::close(fd);
    return fail(w.error());
  }
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  ::dlerror();
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  ::close(fd);  // the mapping stays
  if (!handle) {
    const char* why = ::dlerror();
    return fail("loading the VMM half: " + std::string(why ? why : "dlopen failed"));
  }
  std::shared_ptr<PluginLibrary> lib(new PluginLibrary());
  lib->handle_ = handle;  // closed by the destructor from here on
  auto entry = reinterpret_cast<gears_service_plugin_v1_fn>(::dlsym(handle, GEARS_PLUGIN_ENTRY));
  if (!entry) return fail(std::string("VMM half has no ") + GEARS_PLUGIN_ENTRY);
  const PluginDescriptor* d = nullptr;
  try {
    d = entry();
  } catch (...) {
    return fail(std::string("VMM half's ") + GEARS_PLUGIN_ENTRY + " threw an exception");
  }
  if (!d) return fail(std::string("VMM half's ") + GEARS_PLUGIN_ENTRY + " returned no descriptor");
  lib->descriptor_ = d;
  return lib;
}

std::shared_ptr<PluginLibrary> PluginLibrary::of_descriptor(const PluginDescriptor* descriptor) {
  std::shared_ptr<PluginLibrary> lib(new PluginLibrary());
  lib->descriptor_ = descriptor;
  return lib;
}

PluginLibrary::~PluginLibrary() {
  if (handle_) ::dlclose(handle_);
}

}  // namespace gears::vmm::deploy
