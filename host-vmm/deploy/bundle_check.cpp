#include "deploy/bundle_check.h"

#include <elf.h>

#include <algorithm>
#include <cctype>
#include <nlohmann/json.hpp>

#include "deploy/elf_inspect.h"
#include "gears/abi/manifest.h"
#include "gears/bundle.h"

namespace gears::vmm::deploy {

namespace {

using Json = nlohmann::json;

constexpr size_t kMaxName = 64;
constexpr size_t kMaxProgram = 255;

Expected<std::string> string_field(const Json& obj, const char* key, const std::string& where) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return fail("manifest: " + where + "\"" + key + "\" must be a string");
  return it->get<std::string>();
}

// A list of strings (absent: empty).
Expected<std::vector<std::string>> string_list(const Json& obj, const char* key, const std::string& where) {
  std::vector<std::string> out;
  auto it = obj.find(key);
  if (it == obj.end()) return out;
  if (!it->is_array()) return fail("manifest: " + where + "\"" + key + "\" must be a list of strings");
  for (const auto& v : *it) {
    if (!v.is_string()) return fail("manifest: " + where + "\"" + key + "\" must be a list of strings");
    out.push_back(v.get<std::string>());
  }
  return out;
}

Expected<void> check_shared_object(const ElfImage& elf, const std::string& what) {
  if (elf.machine() != EM_X86_64) return fail(what + " is not an x86-64 ELF file");
  if (elf.type() != ET_DYN) return fail(what + " is not a shared object (ET_DYN)");
  return {};
}

Expected<void> check_exports(const ElfImage& elf, const std::vector<std::string>& wanted, const std::string& what) {
  auto exports = elf.dynamic_exports();
  if (!exports) return fail(what + ": " + exports.error().what());
  for (const auto& name : wanted)
    if (!exports->count(name)) return fail(what + " does not export " + name + " (the manifest says it does)");
  return {};
}

Expected<void> check_kernel_half(ServiceBundle& b, const std::string& release) {
  const std::string what = "kernel half " + b.kernel->file;
  auto elf = ElfImage::parse(b.kernel->data);
  if (!elf) return fail(what + ": " + elf.error().what());
  if (elf->machine() != EM_X86_64) return fail(what + " is not an x86-64 ELF file");
  if (elf->type() != ET_REL) return fail(what + " is not a kernel module (ET_REL)");
  auto vermagic = elf->modinfo("vermagic");
  if (!vermagic) return fail(what + ": " + vermagic.error().what());
  b.vermagic = *vermagic;
  if (release.empty()) return fail(what + ": the guest kernel's release is unknown, so its vermagic cannot be checked");
  // The kernel compares the whole vermagic; its first word is the release it was built for.
  const std::string built_for = b.vermagic.substr(0, b.vermagic.find(' '));
  if (built_for != release)
    return fail(what + " was built for kernel " + built_for + ", the guest runs " + release + " (vermagic \"" +
                b.vermagic + "\")");
  auto name = elf->modinfo("name");
  if (name) {
    b.module_name = *name;
  } else {  // older kbuilds: the file name, with '-' as the kernel spells it
    b.module_name = b.kernel->file.substr(0, b.kernel->file.rfind(".ko"));
    std::replace(b.module_name.begin(), b.module_name.end(), '-', '_');
  }
  if (b.module_name.empty() || b.module_name.size() > 55 ||
      !std::all_of(b.module_name.begin(), b.module_name.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }))
    return fail(what + ": bad module name \"" + b.module_name + "\"");
  return {};
}

Expected<void> parse_manifest(ServiceBundle& b, const Json& m) {
  if (!m.is_object()) return fail("manifest is not a JSON object");
  auto schema = m.find("schema");
  if (schema == m.end() || !schema->is_number_integer() || schema->get<int64_t>() != GEARS_MANIFEST_SCHEMA)
    return fail("manifest: unknown \"schema\" (this gears-vmm reads schema " + std::to_string(GEARS_MANIFEST_SCHEMA) + ")");
  auto svc = m.find("service");
  if (svc == m.end() || !svc->is_object()) return fail("manifest: \"service\" must be an object");
  auto name = string_field(*svc, "name", "service.");
  if (!name) return fail(name.error());
  auto version = string_field(*svc, "version", "service.");
  if (!version) return fail(version.error());
  auto id = svc->find("id");
  if (id == svc->end() || !id->is_number_unsigned() || id->get<uint64_t>() == 0 || id->get<uint64_t>() > 0xffff)
    return fail("manifest: \"service\".\"id\" must be an integer 1..65535 (0 is gears-vmm's own)");
  if (!valid_service_name(*name)) return fail("manifest: bad service name \"" + *name + "\" (letters, digits, . _ -; at most 64)");
  if (version->size() > kMaxName) return fail("manifest: service version is longer than 64 characters");
  b.name = *name;
  b.version = *version;
  b.id = static_cast<uint16_t>(id->get<uint64_t>());

  if (auto pp = m.find("patch_points"); pp != m.end()) {
    if (!pp->is_array()) return fail("manifest: \"patch_points\" must be a list");
    for (const auto& p : *pp) {
      if (!p.is_object() || p.value("kind", "") != "interpose") continue;
      auto progs = string_list(p, "programs", "patch_points[].");
      if (!progs) return fail(progs.error());
      for (auto& prog : *progs) {
        if (prog.empty() || prog.size() > kMaxProgram || prog.find('\0') != std::string::npos)
          return fail("manifest: bad interpose program \"" + prog + "\"");
        if (std::find(b.programs.begin(), b.programs.end(), prog) == b.programs.end()) b.programs.push_back(prog);
      }
    }
  }
  if (auto uh = m.find("user_half"); uh != m.end()) {
    if (!uh->is_object()) return fail("manifest: \"user_half\" must be an object");
    auto install = string_field(*uh, "install", "user_half.");
    if (!install) return fail(install.error());
    if (!valid_guest_path(*install)) return fail("manifest: bad user_half.install path \"" + *install + "\"");
    b.user_install = *install;
  }
  if (auto ex = m.find("exports"); ex != m.end()) {
    if (!ex->is_object()) return fail("manifest: \"exports\" must be an object");
    auto user = string_list(*ex, "guest_user", "exports.");
    if (!user) return fail(user.error());
    b.user_exports = std::move(*user);
  }
  return {};
}

}  // namespace

bool valid_service_name(const std::string& name) {
  if (name.empty() || name.size() > kMaxName || !std::isalnum(static_cast<unsigned char>(name[0]))) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

bool valid_guest_path(const std::string& p) {
  if (p.size() < 2 || p.size() > 255 || p[0] != '/' || p.back() == '/') return false;
  if (!std::all_of(p.begin(), p.end(), [](char c) { return c > ' ' && c < 0x7f; })) return false;
  for (const char* bad : {"//", "/./", "/../"})
    if (p.find(bad) != std::string::npos) return false;
  return !p.ends_with("/.") && !p.ends_with("/..");
}

Expected<ServiceBundle> check_bundle(std::span<const uint8_t> image, const std::string& guest_release) {
  auto entries = bundle::read(image);
  if (!entries) return fail(entries.error());  // already says "bundle: ..."
  const bundle::Entry* manifest = bundle::find(*entries, GEARS_BUNDLE_MANIFEST);
  if (!manifest) return fail("bundle has no manifest");
  ServiceBundle b;
  b.manifest_json.assign(manifest->data.begin(), manifest->data.end());
  const Json m = Json::parse(b.manifest_json, nullptr, false);
  if (m.is_discarded()) return fail("manifest is not valid JSON");
  try {
    GEARS_TRY(parse_manifest(b, m));
    // Halves: a bundle entry exactly where the manifest names one, under that name.
    const Json* halves = nullptr;
    if (auto h = m.find("halves"); h != m.end()) {
      if (!h->is_object()) return fail("manifest: \"halves\" must be an object");
      halves = &*h;
    }
    struct Kind {
      const char* key;
      gears_bundle_kind kind;
      std::optional<BundleHalf>* slot;
    } kinds[] = {{"vmm", GEARS_BUNDLE_VMM_HALF, &b.vmm},
                 {"guest_user", GEARS_BUNDLE_USER_HALF, &b.user},
                 {"guest_kernel", GEARS_BUNDLE_KERNEL_HALF, &b.kernel}};
    for (const auto& k : kinds) {
      const bundle::Entry* e = bundle::find(*entries, k.kind);
      std::optional<std::string> named;
      if (halves && halves->contains(k.key)) {
        auto f = string_field(*halves, k.key, "halves.");
        if (!f) return fail(f.error());
        named = *f;
      }
      if (named && !e) return fail(std::string("bundle lacks the ") + k.key + " half " + *named + " the manifest names");
      if (!named && e) return fail(std::string("bundle has a ") + k.key + " half " + e->name + " the manifest does not name");
      if (!e) continue;
      if (e->name != *named)
        return fail(std::string("bundle's ") + k.key + " half is " + e->name + ", the manifest names " + *named);
      if (e->data.empty()) return fail(std::string("bundle's ") + k.key + " half " + e->name + " is empty");
      *k.slot = BundleHalf{e->name, e->data};
    }
  } catch (const nlohmann::json::exception& e) {
    return fail(std::string("manifest: ") + e.what());
  }

  if (b.vmm) {
    const std::string what = "VMM half " + b.vmm->file;
    auto elf = ElfImage::parse(b.vmm->data);
    if (!elf) return fail(what + ": " + elf.error().what());
    GEARS_TRY(check_shared_object(*elf, what));
    GEARS_TRY(check_exports(*elf, {GEARS_PLUGIN_ENTRY}, what));
  }
  if (b.user) {
    const std::string what = "user half " + b.user->file;
    auto elf = ElfImage::parse(b.user->data);
    if (!elf) return fail(what + ": " + elf.error().what());
    GEARS_TRY(check_shared_object(*elf, what));
    GEARS_TRY(check_exports(*elf, b.user_exports, what));
  }
  if (b.kernel) GEARS_TRY(check_kernel_half(b, guest_release));
  return b;
}

}  // namespace gears::vmm::deploy
