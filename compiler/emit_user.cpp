// Emitter: the guest-user half, one C++ file built into a shared library that is preloaded
// into guest processes. It carries the service's includes, its guest_user functions and their
// helpers, hypercall stubs in place of [[gears::vmm]] functions, and one exported wrapper per
// interposed symbol (everything else is hidden: the library is built -fvisibility=hidden).
#include "emit_common.h"
#include "passes.h"
#include "stubs.h"

namespace gears::compiler {

bool emit_user(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts) {
  const std::string mod = module_name(svc);
  Writer w(opts.out_dir + "/" + mod + ".user.cpp");
  hosted_preamble(ctx, w, svc, "guest-user",
                  "#include <gears/user.h>\n\n#include <cstdint>\n");
  for (const clang::Decl* d : ordered(ctx, svc, Half::user)) {
    const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(d);
    const ServiceFunction* sf = fd ? svc.find(fd) : nullptr;
    if (sf && sf->half == Half::vmm) {
      if (fd != fd->getFirstDecl()) continue;
      for (const Hypercall& hc : svc.hypercalls)
        if (hc.fn == sf->decl) emit_guest_stub(ctx, w, hc, "::gears::user::hypercall", "std::uint64_t");
      continue;
    }
    w << "\n";
    copy_decl(ctx, w, d);
  }
  bool any = false;
  for (const PatchPoint& pp : svc.patch_points) {
    if (pp.kind != PatchPoint::Kind::interpose) continue;
    if (!any) {
      w << "\n";
      w.line_here();
      w << "// gearsc: patch points. Each interposed symbol is exported under its own name and\n"
           "// forwards to its handler; gears::user::original<>() reaches the next definition.\n";
      any = true;
    }
    const std::string wrapper = "gears_interpose_" + pp.symbol;
    w << "\n// " + pp.library + "!" + pp.symbol + " -> " + pp.handler->getNameAsString() + " (" +
             location(ctx, pp.loc) + ")\n";
    w << "extern \"C\" __attribute__((visibility(\"default\"))) " +
             signature(ctx, pp.handler, wrapper) + " __asm__(" + c_string(pp.symbol) + ");\n";
    w << "extern \"C\" " + signature(ctx, pp.handler, wrapper) + " {\n";
    w << "  return " + pp.handler->getNameAsString() + "(" + arg_list(pp.handler) + ");\n}\n";
  }
  return w.save(diags);
}

}  // namespace gears::compiler
