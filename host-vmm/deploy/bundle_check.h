// Everything deploy checks about a service bundle before it touches the guest or loads code:
// the container (gears::bundle::read), the manifest (schema, service name/version/id, halves,
// exports, interpose programs), and each half's ELF: the VMM half and the user half are
// x86-64 shared objects exporting what the manifest says, the kernel half an x86-64
// relocatable module whose vermagic names the guest kernel's release.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "gears/expected.h"

namespace gears::vmm::deploy {

struct BundleHalf {
  std::string file;           // the name in the bundle (and the manifest)
  std::vector<uint8_t> data;
};

struct ServiceBundle {
  std::string name;     // [A-Za-z0-9][A-Za-z0-9._-]*, at most 64 characters: safe in paths
  std::string version;
  uint16_t id = 0;
  std::string manifest_json;
  std::optional<BundleHalf> vmm, user, kernel;
  std::vector<std::string> programs;      // the interpose patch points' "programs", deduplicated
  std::vector<std::string> user_exports;  // "exports"."guest_user"
  std::string user_install;               // "user_half"."install": the user half's guest path ("": default)
  std::string module_name;                // the kernel half's .modinfo name (for delete_module)
  std::string vermagic;                   // the kernel half's .modinfo vermagic
};

// `guest_release` is the running guest kernel's release (e.g. "6.1.0-NN-amd64", from its bzImage); a bundle with a
// kernel half is refused when it is empty or the module's vermagic names another release.
Expected<ServiceBundle> check_bundle(std::span<const uint8_t> image, const std::string& guest_release);

// Service names end up in guest file names and control replies.
bool valid_service_name(const std::string& name);
// A guest file path a manifest may name: absolute, normalized (no ".", "..", "//", trailing
// "/"), at most 255 printable ASCII characters.
bool valid_guest_path(const std::string& path);

}  // namespace gears::vmm::deploy
