#include "deploy/plugin_library.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <string>

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

// glibc finds an already loaded library by its name before it looks at the file. A VMM half
// loaded earlier under the same "/proc/self/fd/N" (fd numbers are reused) and still loaded would
// be handed back instead of this image: a redeploy would run the OLD code with the old statics.
// An earlier half stays loaded while a handler still runs, and for good when glibc marks it
// NODELETE, which it does for any object with STB_GNU_UNIQUE symbols (g++ emits them, e.g. for
// std::to_string's digit table). So the path is spelled differently ("/proc//self/fd/N", ...)
// until no loaded library has that name; RTLD_NOLOAD then compares the file itself, a new memfd.
constexpr int kMaxSpellings = 1024;

Expected<std::string> unused_library_path(int fd) {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  for (int i = 0; i < kMaxSpellings; ++i) {
    void* loaded = ::dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (!loaded) return path;
    ::dlclose(loaded);
    path.insert(5, "/");
  }
  return fail("loading the VMM half: " + std::to_string(kMaxSpellings) + " earlier VMM halves are still loaded");
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
  auto path = unused_library_path(fd);
  if (!path) {
    ::close(fd);
    return fail(path.error());
  }
  ::dlerror();
  void* handle = ::dlopen(path->c_str(), RTLD_NOW | RTLD_LOCAL);
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
