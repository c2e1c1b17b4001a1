// Emitter: the guest-user half, one C++ file built into a shared library that is preloaded
// into new guest processes or dlopen()ed into running ones. It carries the service's includes,
// its guest_user functions and their helpers, hypercall stubs in place of [[gears::vmm]]
// functions, one exported wrapper per interposed symbol, and the two linking entry points
// gears_user_attach_v1/gears_user_detach_v1 (everything else is hidden: the library is built
// -fvisibility=hidden).
#include "gears/abi/manifest.h"

#include "emit_common.h"
#include "passes.h"
#include "stubs.h"

namespace gears::compiler {

bool emit_user(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts) {
  const std::string mod = module_name(svc);
  Writer w(opts.out_dir + "/" + mod + ".user.cpp");
  hosted_preamble(ctx, w, svc, "guest-user",
                  "#include <gears/user.h>\n#include <gears/user_link.h>\n\n#include <cstddef>\n#include <cstdint>\n");
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
  std::vector<const PatchPoint*> interposed;
  for (const PatchPoint& pp : svc.patch_points)
    if (pp.kind == PatchPoint::Kind::interpose) interposed.push_back(&pp);

  w << "\n";
  w.line_here();
  if (!interposed.empty())
    w << "// gearsc: patch points. Each interposed symbol is exported under its own name (what an\n"
         "// LD_PRELOADed half needs) and forwards to a hidden wrapper, whose address is this\n"
         "// library's whatever the lookup order (what gears_user_attach_v1 binds to).\n"
         "// gears::user::original<>() reaches the next definition.\n";
  for (const PatchPoint* pp : interposed) {
    const std::string wrapper = "gears_interpose_" + pp->symbol, exported = "gears_export_" + pp->symbol;
    w << "\n// " + pp->library + "!" + pp->symbol + " -> " + pp->handler->getNameAsString() + " (" +
             location(ctx, pp->loc) + ")\n";
    w << "extern \"C\" __attribute__((visibility(\"hidden\"))) " + signature(ctx, pp->handler, wrapper) + " {\n";
    w << "  return " + pp->handler->getNameAsString() + "(" + arg_list(pp->handler) + ");\n}\n";
    w << "extern \"C\" __attribute__((visibility(\"default\"))) " + signature(ctx, pp->handler, exported) +
             " __asm__(" + c_string(pp->symbol) + ");\n";
    w << "extern \"C\" " + signature(ctx, pp->handler, exported) + " {\n";
    w << "  return " + wrapper + "(" + arg_list(pp->handler) + ");\n}\n";
  }

  // The linking entry points. gears-vmm calls attach after dlopen(RTLD_NOW) into a running
  // process and detach before dlclose; they return 0 or -errno (gears/user_link.h).
  if (!interposed.empty()) w << "\n";
  w << "// gearsc: linking entry points for a half dlopen()ed into a running process: attach rebinds\n"
       "// the process's references to the interposed symbols to this library, detach undoes it.\n";
  if (interposed.empty()) {
    w << "static const ::gears::user::link::Interposer* const gears_interposers = nullptr;\n"
         "static constexpr std::size_t gears_interposer_count = 0;\n";
  } else {
    w << "static const ::gears::user::link::Interposer gears_interposers[] = {\n";
    for (const PatchPoint* pp : interposed)
      w << "    {" + c_string(pp->symbol) + ", reinterpret_cast<const void*>(&gears_interpose_" + pp->symbol + ")},\n";
    w << "};\n"
         "static constexpr std::size_t gears_interposer_count = sizeof gears_interposers / sizeof gears_interposers[0];\n";
  }
  w << "extern \"C\" __attribute__((visibility(\"default\"))) int " GEARS_USER_ATTACH_ENTRY "(void) {\n"
       "  return ::gears::user::link::attach(gears_interposers, gears_interposer_count);\n}\n"
       "extern \"C\" __attribute__((visibility(\"default\"))) int " GEARS_USER_DETACH_ENTRY "(void) {\n"
       "  return ::gears::user::link::detach();\n}\n";
  return w.save(diags);
}

}  // namespace gears::compiler
