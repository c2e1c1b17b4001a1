// Emitter: the VMM half, one C++ file built into the plugin gears-vmm loads. It carries the
// service's [[gears::vmm]] functions and their helpers, one dispatcher per hypercall (unmarshal
// registers and guest memory, call, write back, return a value or -errno) and the descriptor
// returned by the plugin's single C entry point (gears/vmm/plugin.h).
#include "emit_common.h"
#include "passes.h"

namespace gears::compiler {
namespace {

void emit_dispatcher(clang::ASTContext& ctx, Writer& w, const Hypercall& hc) {
  const clang::FunctionDecl* fd = hc.fn;
  const std::string name = fd->getNameAsString();
  w << "\n// " + name + " (" + location(ctx, fd->getLocation()) + "), hypercall " + hex(hc.number) + "\n";
  w << "std::int64_t gears_dispatch_" + name +
           "(::gears::vmm::GuestContext& guest, const ::gears::vmm::HypercallArgs& args) {\n";
  unsigned reg = 0;
  std::string call_args;
  for (unsigned i = 0; i < fd->getNumParams(); ++i) {
    clang::QualType t = fd->getParamDecl(i)->getType();
    clang::QualType value = t->isReferenceType() ? t->getPointeeType().getUnqualifiedType() : t.getUnqualifiedType();
    const std::string v = "v" + std::to_string(i), tn = type_name(ctx, value);
    const std::string r = "args.regs[" + std::to_string(reg) + "]";
    if (hc.buffer[i]) {
      const std::string size = "args.regs[" + std::to_string(reg + 1) + "]";
      w << "  " + tn + " " + v + "{};\n";
      w << "  if (" + size + " != sizeof(" + v + ")) return -EINVAL;\n";
      w << "  if (!guest.read(" + r + ", &" + v + ", sizeof(" + v + "))) return -EFAULT;\n";
      reg += 2;
    } else {
      w << "  const " + tn + " " + v + " = static_cast<" + tn + ">(" + r + ");\n";
      reg += 1;
    }
    call_args += (i ? ", " : "") + v;
  }
  w << "  ::gears::vmm::current_guest_context = &guest;\n";
  const bool is_void = fd->getReturnType()->isVoidType();
  w << (is_void ? "  " : "  const std::int64_t result = static_cast<std::int64_t>(") + name + "(" +
           call_args + (is_void ? ");\n" : "));\n");
  w << "  ::gears::vmm::current_guest_context = nullptr;\n";
  reg = 0;
  for (unsigned i = 0; i < fd->getNumParams(); ++i) {
    if (hc.writeback[i]) {
      const std::string v = "v" + std::to_string(i);
      w << "  if (!guest.write(args.regs[" + std::to_string(reg) + "], &" + v + ", sizeof(" + v +
               "))) return -EFAULT;\n";
    }
    reg += hc.buffer[i] ? 2 : 1;
  }
  w << (is_void ? "  return 0;\n}\n" : "  return result;\n}\n");
}

}  // namespace

bool emit_vmm(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts) {
  const std::string mod = module_name(svc);
  Writer w(opts.out_dir + "/" + mod + ".vmm.cpp");
  hosted_preamble(ctx, w, svc, "VMM",
                  "#include <gears/vmm/plugin.h>\n\n#include <cerrno>\n#include <cstdint>\n");
  for (const clang::Decl* d : ordered(ctx, svc, Half::vmm)) {
    w << "\n";
    copy_decl(ctx, w, d);
  }
  w << "\n";
  w.line_here();
  w << "// gearsc: hypercall dispatchers (guest halves -> VMM half).\nnamespace {\n";
  for (const Hypercall& hc : svc.hypercalls) emit_dispatcher(ctx, w, hc);
  if (!svc.hypercalls.empty()) {
    w << "\nconst ::gears::vmm::PluginHypercall gears_hypercalls[] = {\n";
    for (const Hypercall& hc : svc.hypercalls)
      w << "    {" + hex(hc.number) + ", " + c_string(hc.fn->getNameAsString()) + ", &gears_dispatch_" +
               hc.fn->getNameAsString() + "},\n";
    w << "};\n";
  }
  std::string start = "nullptr";
  for (const ServiceFunction& f : svc.functions)
    if (f.on_load && f.half == Half::vmm) start = "&" + f.decl->getNameAsString();
  w << "\nconst char gears_manifest[] =\n    " + c_string(manifest_json(svc, /*pretty=*/false)) + ";\n";
  w << "\nconst ::gears::vmm::PluginDescriptor gears_descriptor = {\n";
  w << "    ::gears::vmm::kPluginAbiVersion,\n    " + c_string(svc.name) + ",\n    " + c_string(svc.version) +
           ",\n    " + hex(svc.id) + ",\n    gears_manifest,\n    " +
           (svc.hypercalls.empty() ? "nullptr" : "gears_hypercalls") + ",\n    " +
           std::to_string(svc.hypercalls.size()) + ",\n    " + start + ",\n};\n";
  w << "\n}  // namespace\n\n";
  w << "extern \"C\" __attribute__((visibility(\"default\"))) const ::gears::vmm::PluginDescriptor* "
       "gears_service_plugin_v1() {\n  return &gears_descriptor;\n}\n";
  return w.save(diags);
}

}  // namespace gears::compiler
