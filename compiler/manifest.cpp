// Emitter: the service manifest (schema in gears/abi/manifest.h). gears-pack later adds what
// LIEF finds in the built halves and packs it into the bundle.
#include <nlohmann/json.hpp>

#include "gears/abi/manifest.h"

#include "emit_common.h"
#include "passes.h"

namespace gears::compiler {

std::string manifest_json(const Service& svc, bool pretty) {
  using nlohmann::json;
  const std::string mod = module_name(svc);
  json m;
  m["schema"] = GEARS_MANIFEST_SCHEMA;
  m["service"] = {{"name", svc.name}, {"version", svc.version}, {"id", svc.id}};
  m["hypercalls"] = json::array();
  for (const Hypercall& hc : svc.hypercalls) {
    json args = json::array();
    for (unsigned i = 0; i < hc.fn->getNumParams(); ++i)
      args.push_back({{"name", hc.fn->getParamDecl(i)->getNameAsString()},
                      {"kind", hc.buffer[i] ? (hc.writeback[i] ? "buffer_inout" : "buffer") : "scalar"}});
    json from = json::array();
    for (Half h : hc.callers) from.push_back(half_name(h));
    m["hypercalls"].push_back({{"name", hc.fn->getNameAsString()}, {"number", hc.number}, {"from", from},
                               {"args", args},
                               {"result", hc.fn->getReturnType()->isVoidType() ? "void" : "scalar"}});
  }
  m["patch_points"] = json::array();
  json user_exports = json::array(), user_imports = json::array({"dlsym", "dladdr", "dl_iterate_phdr", "mprotect"});
  json kernel_imports = json::array();
  for (const PatchPoint& pp : svc.patch_points) {
    if (pp.kind == PatchPoint::Kind::interpose) {
      m["patch_points"].push_back({{"kind", "interpose"}, {"library", pp.library}, {"symbol", pp.symbol},
                                   {"handler", pp.handler->getNameAsString()}, {"programs", pp.programs}});
      user_exports.push_back(pp.symbol);
    } else {
      m["patch_points"].push_back({{"kind", "kernel_hook"}, {"hook", pp.symbol},
                                   {"handler", pp.handler->getNameAsString()}});
      kernel_imports.push_back(pp.symbol);
    }
  }
  user_exports.push_back(GEARS_USER_ATTACH_ENTRY);
  user_exports.push_back(GEARS_USER_DETACH_ENTRY);
  m["halves"] = {{"vmm", mod + ".vmm.so"}, {"guest_user", mod + ".user.so"}, {"guest_kernel", mod + ".ko"}};
  if (!svc.user_half_install.empty()) m["user_half"] = {{"install", svc.user_half_install}};
  m["exports"] = {{"vmm", json::array({GEARS_PLUGIN_ENTRY})}, {"guest_user", user_exports}};
  m["required_guest_symbols"] = {{"guest_user", user_imports}, {"guest_kernel", kernel_imports}};
  return pretty ? m.dump(2) + "\n" : m.dump();
}

bool emit_manifest(Diags& diags, const Service& svc, const Options& opts) {
  Writer w(opts.out_dir + "/" + module_name(svc) + ".manifest.json");
  w << manifest_json(svc);
  return w.save(diags);
}

}  // namespace gears::compiler
