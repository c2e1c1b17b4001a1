#include "control/socket_path.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>

namespace gears::vmm::control {

std::string default_socket_path() {
  if (const char* s = std::getenv("GEARS_SOCKET"); s && *s) return s;
  if (const char* x = std::getenv("XDG_RUNTIME_DIR"); x && *x) return std::string(x) + "/gears/vmm.sock";
  return "/tmp/gears-" + std::to_string(geteuid()) + "/vmm.sock";
}

std::string socket_dir(const std::string& path) {
  auto slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

Expected<void> ensure_private_dir(const std::string& dir) {
  if (mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return fail_errno("creating socket directory " + dir);
  struct stat st{};
  if (lstat(dir.c_str(), &st) != 0) return fail_errno("checking socket directory " + dir);
  if (!S_ISDIR(st.st_mode)) return fail("socket directory " + dir + " is not a directory");
  if (st.st_uid != geteuid() || (st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return fail("socket directory " + dir + " is not private (mode " + mode + ", owner uid " +
                std::to_string(st.st_uid) + "): want mode 0700, owned by uid " + std::to_string(geteuid()));
  }
  return {};
}

}  // namespace gears::vmm::control
