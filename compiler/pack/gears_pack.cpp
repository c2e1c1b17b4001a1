// gears-pack: the last step of gears_add_service(). Checks the built halves with LIEF against
// the manifest (the VMM half exports the plugin entry, the user half exports every interposed
// symbol), records what the user half imports, embeds the final manifest in the user half
// (section GEARS_MANIFEST_SECTION) and writes the bundle (gears/abi/bundle.h).
//
//   gears-pack -m M.json --vmm V.so --user U.so --kernel K.ko -o S.gears
//   gears-pack --check S.gears          validate a bundle and print its manifest
#include <LIEF/ELF.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <string>

#include "gears/abi/manifest.h"
#include "gears/bundle.h"

namespace {

using gears::Expected;
using gears::fail;
using nlohmann::json;

struct ElfInfo {
  std::set<std::string> exports, imports;
};

// LIEF 0.9 reports problems by throwing: keep that inside this function.
Expected<ElfInfo> inspect(const std::string& path) {
  try {
    std::unique_ptr<LIEF::ELF::Binary> bin = LIEF::ELF::Parser::parse(path);
    if (!bin) return fail("cannot parse ELF " + path);
    ElfInfo info;
    for (const std::string& s : bin->exported_functions()) info.exports.insert(s);
    for (const std::string& s : bin->imported_functions()) info.imports.insert(s);
    return info;
  } catch (const std::exception& e) {
    return fail("cannot parse ELF " + path + ": " + e.what());
  }
}

Expected<void> embed_manifest(const std::string& in, const std::string& out, const std::string& manifest) {
  try {
    std::unique_ptr<LIEF::ELF::Binary> bin = LIEF::ELF::Parser::parse(in);
    if (!bin) return fail("cannot parse ELF " + in);
    if (bin->has_section(GEARS_MANIFEST_SECTION)) return fail(in + " already has a manifest section");
    // A *loaded* section: LIEF 0.9 never writes the content of a non-loaded one (the header
    // points into .shstrtab). LIEF pads it to a page with NULs: readers stop at the first NUL.
    LIEF::ELF::Section sec(GEARS_MANIFEST_SECTION);
    sec.content(std::vector<uint8_t>(manifest.begin(), manifest.end()));
    sec.size(manifest.size());  // LIEF 0.9: content() alone leaves the size at 0
    bin->add(sec, /*loaded=*/true);
    bin->write(out);
    // Read it back: the embedded manifest is what gears-vmm will find.
    std::unique_ptr<LIEF::ELF::Binary> check = LIEF::ELF::Parser::parse(out);
    std::vector<uint8_t> got = check->get_section(GEARS_MANIFEST_SECTION).content();
    if (std::string(got.begin(), got.end()).rfind(manifest, 0) != 0)
      return fail("manifest section of " + out + " does not read back");
    return {};
  } catch (const std::exception& e) {
    return fail("cannot embed the manifest in " + in + ": " + e.what());
  }
}

Expected<std::vector<uint8_t>> read_text(const std::string& path) { return gears::bundle::read_file(path); }

Expected<void> pack(const std::string& manifest_path, const std::string& vmm, const std::string& user,
                    const std::string& kernel, const std::string& out) {
  auto mtext = read_text(manifest_path);
  if (!mtext) return fail(mtext.error());
  json m = json::parse(mtext->begin(), mtext->end(), nullptr, /*allow_exceptions=*/false);
  if (m.is_discarded() || m.value("schema", 0) != GEARS_MANIFEST_SCHEMA)
    return fail(manifest_path + ": not a gears manifest of schema " + std::to_string(GEARS_MANIFEST_SCHEMA));

  // The manifest comes from gearsc, but a hand-edited one must not crash the packer.
  for (const char* half : {"vmm", "guest_user"}) {
    const json* list = m.contains("exports") && m["exports"].is_object() && m["exports"].contains(half)
                           ? &m["exports"][half] : nullptr;
    if (!list || !list->is_array()) return fail(manifest_path + ": exports." + half + " is not a list");
    for (const auto& s : *list)
      if (!s.is_string()) return fail(manifest_path + ": exports." + half + " holds a non-string");
  }
  auto v = inspect(vmm);
  if (!v) return fail(v.error());
  for (const auto& s : m["exports"]["vmm"])
    if (!v->exports.count(s.get<std::string>()))
      return fail(vmm + ": VMM half does not export '" + s.get<std::string>() + "'");
  auto u = inspect(user);
  if (!u) return fail(u.error());
  for (const auto& s : m["exports"]["guest_user"])
    if (!u->exports.count(s.get<std::string>()))
      return fail(user + ": guest-user half does not export '" + s.get<std::string>() + "'");
  m["required_guest_symbols"]["guest_user"] = std::vector<std::string>(u->imports.begin(), u->imports.end());

  auto ko = gears::bundle::read_file(kernel);
  if (!ko) return fail(ko.error());
  if (ko->size() < 4 || std::memcmp(ko->data(), "\177ELF", 4) != 0) return fail(kernel + ": not an ELF module");

  const std::string final_manifest = m.dump(2) + "\n";
  const std::string embedded = out + ".user.so.tmp";
  GEARS_TRY(embed_manifest(user, embedded, final_manifest));
  auto user_bytes = gears::bundle::read_file(embedded);
  std::filesystem::remove(embedded);
  if (!user_bytes) return fail(user_bytes.error());
  auto vmm_bytes = gears::bundle::read_file(vmm);
  if (!vmm_bytes) return fail(vmm_bytes.error());

  auto name = [](const std::string& p) { return std::filesystem::path(p).filename().string(); };
  std::vector<gears::bundle::Entry> entries = {
      {GEARS_BUNDLE_MANIFEST, "manifest.json", {final_manifest.begin(), final_manifest.end()}},
      {GEARS_BUNDLE_VMM_HALF, name(vmm), std::move(*vmm_bytes)},
      {GEARS_BUNDLE_USER_HALF, name(user), std::move(*user_bytes)},
      {GEARS_BUNDLE_KERNEL_HALF, name(kernel), std::move(*ko)},
  };
  auto image = gears::bundle::write(entries);
  if (!image) return fail(image.error());
  return gears::bundle::write_file(out, *image);
}

Expected<void> check(const std::string& path) {
  auto image = gears::bundle::read_file(path);
  if (!image) return fail(image.error());
  auto entries = gears::bundle::read(*image);
  if (!entries) return fail(path + ": " + entries.error().what());
  for (const auto& e : *entries) std::printf("%-10u %-40s %zu bytes\n", e.kind, e.name.c_str(), e.data.size());
  const auto* m = gears::bundle::find(*entries, GEARS_BUNDLE_MANIFEST);
  std::fwrite(m->data.data(), 1, m->data.size(), stdout);
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  std::string manifest, vmm, user, kernel, out, check_path;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "-m") manifest = next();
    else if (a == "--vmm") vmm = next();
    else if (a == "--user") user = next();
    else if (a == "--kernel") kernel = next();
    else if (a == "-o") out = next();
    else if (a == "--check") check_path = next();
    else {
      std::fprintf(stderr, "usage: gears-pack -m MANIFEST --vmm SO --user SO --kernel KO -o BUNDLE\n"
                           "       gears-pack --check BUNDLE\n");
      return 2;
    }
  }
  Expected<void> r = !check_path.empty() ? check(check_path)
                     : (manifest.empty() || vmm.empty() || user.empty() || kernel.empty() || out.empty())
                         ? Expected<void>(fail("missing arguments (see --help)"))
                         : pack(manifest, vmm, user, kernel, out);
  if (!r) {
    std::fprintf(stderr, "gears-pack: %s\n", r.error().what().c_str());
    return 1;
  }
  return 0;
}
