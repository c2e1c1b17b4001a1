#include "shm/region_spec.h"

#include <sstream>

#include "config/vm_config.h"

namespace gears::vmm::shm {

namespace {

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > kMaxNameLen) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

}  // namespace

Expected<RegionSpec> parse_region_spec(const std::string& spec) {
  RegionSpec r;
  bool have_size = false;
  std::stringstream in(spec);
  std::string item;
  while (std::getline(in, item, ',')) {
    const size_t eq = item.find('=');
    if (eq == std::string::npos) return fail("--shm: '" + item + "' is not key=value (name, size, path)");
    const std::string key = item.substr(0, eq), value = item.substr(eq + 1);
    if (key == "name") {
      if (!valid_name(value))
        return fail("--shm: name '" + value + "' must be 1-" + std::to_string(kMaxNameLen) + " of [a-z0-9_-]");
      r.name = value;
    } else if (key == "size") {
      auto s = config::parse_size(value);
      if (!s) return fail("--shm: size: " + s.error().what());
      r.size = *s;
      have_size = true;
    } else if (key == "path") {
      if (value.empty() || value[0] != '/') return fail("--shm: path '" + value + "' must be absolute");
      r.path = value;
    } else {
      return fail("--shm: unknown key '" + key + "' (name, size, path)");
    }
  }
  if (r.name.empty()) return fail("--shm: name= is required");
  if (!have_size) return fail("--shm: size= is required");
  if (r.size == 0 || r.size % kRegionAlign != 0 || r.size > kMaxRegionSize)
    return fail("--shm: size must be a multiple of 2M between 2M and 64G, got " + std::to_string(r.size) + " bytes");
  if (r.path.empty()) r.path = "/dev/shm/gears-shm-" + r.name;
  return r;
}

}  // namespace gears::vmm::shm
