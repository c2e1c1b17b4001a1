// Pass 1: read the annotations of the service file into the Service model, and reject
// annotations that make no sense (two halves, patch points on the wrong half, malformed
// arguments, missing patch targets, handlers of the wrong shape).
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/Basic/SourceManager.h>

#include "annotations.h"
#include "gears/abi/hypercall.h"
#include "passes.h"

namespace gears::compiler {
namespace {

bool in_main_file(const clang::SourceManager& sm, clang::SourceLocation loc) {
  return loc.isValid() && sm.isInMainFile(sm.getExpansionLoc(loc));
}

// Annotated declarations that are not at the top level of the service file.
class NestedFinder : public clang::RecursiveASTVisitor<NestedFinder> {
 public:
  NestedFinder(const clang::SourceManager& sm, Diags& d) : sm_(sm), diags_(d) {}
  bool VisitDecl(clang::Decl* d) {
    if (!in_main_file(sm_, d->getLocation()) || d->getDeclContext() == nullptr ||
        d->getDeclContext()->isTranslationUnit() || annotations_of(d).empty())
      return true;
    diags_.error(d->getLocation(),
                 "gears annotations apply only to declarations at the top level of the service file");
    return true;
  }

 private:
  const clang::SourceManager& sm_;
  Diags& diags_;
};

bool is_hook_param(clang::QualType t) {
  if (!t->isReferenceType()) return false;
  clang::QualType p = t->getPointeeType();
  const auto* rd = p->getAsRecordDecl();
  return p.isConstQualified() && rd && rd->getName() == "gears_kernel_hook";
}

bool is_service_host_param(clang::QualType t) {
  if (!t->isLValueReferenceType()) return false;
  const auto* rd = t->getPointeeType()->getAsCXXRecordDecl();
  return rd && rd->getQualifiedNameAsString() == "gears::vmm::ServiceHost";
}

// The handler of an interposed symbol must be callable where the original was: same result
// and the same parameters (extra ones only where the original is variadic, e.g. open's mode).
void check_interpose_type(clang::ASTContext& ctx, Diags& diags, const clang::FunctionDecl* h,
                          const PatchPoint& pp) {
  auto name = ctx.DeclarationNames.getIdentifier(&ctx.Idents.get(pp.symbol));
  const clang::FunctionDecl* target = nullptr;
  for (const clang::NamedDecl* nd : ctx.getTranslationUnitDecl()->lookup(name))
    if (const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(nd->getUnderlyingDecl())) target = fd;
  if (!target) {
    diags.error(pp.loc, "interposed symbol '%0' is not declared; include the header of '%1' "
                        "that declares it") << pp.symbol << pp.library;
    return;
  }
  if (!target->isExternC()) {
    diags.error(pp.loc, "interposed symbol '%0' does not have C linkage") << pp.symbol;
    diags.note(target->getLocation(), "'%0' declared here") << pp.symbol;
    return;
  }
  const auto* tt = target->getType()->castAs<clang::FunctionProtoType>();
  bool ok = ctx.hasSameType(tt->getReturnType(), h->getReturnType()) &&
            (h->getNumParams() == tt->getNumParams() ||
             (tt->isVariadic() && h->getNumParams() > tt->getNumParams()));
  for (unsigned i = 0; ok && i < tt->getNumParams(); ++i)
    ok = ctx.hasSameUnqualifiedType(tt->getParamType(i), h->getParamDecl(i)->getType());
  if (!ok) {
    diags.error(h->getLocation(), "handler '%0' of type %1 does not match interposed '%2' of type %3")
        << h->getName() << h->getType() << pp.symbol << target->getType();
    diags.note(target->getLocation(), "'%0' declared here") << pp.symbol;
  }
}

void add_function(clang::ASTContext& ctx, Diags& diags, const Options& opts, Service& svc,
                  const clang::FunctionDecl* fd, const std::vector<Annotation>& anns) {
  const clang::FunctionDecl* canon = fd->getCanonicalDecl();
  if (svc.function_index.count(canon)) return;  // seen through another redeclaration
  const clang::FunctionDecl* def = fd->getDefinition() ? fd->getDefinition() : fd;

  ServiceFunction sf;
  sf.decl = def;
  int halves = 0;
  const Annotation* first_half = nullptr;
  std::vector<const Annotation*> patches;
  for (const Annotation& a : anns) {
    Half h;
    if (a.name == "vmm") h = Half::vmm;
    else if (a.name == "guest_user") h = Half::user;
    else if (a.name == "guest_kernel") h = Half::kernel;
    else {
      if (a.name == "on_load") sf.on_load = true;
      if (a.name == "on_unload") sf.on_unload = true;
      if (a.name == "interpose" || a.name == "kernel_hook") patches.push_back(&a);
      if (a.name == "service") diags.error(a.loc, "'gears::service' applies to the service variable; use GEARS_SERVICE(name, version)");
      continue;
    }
    if (halves++ && h != sf.half) {
      diags.error(a.loc, "'%0' cannot run in two halves: it is already [[gears::%1]]")
          << fd->getName() << half_name(sf.half);
      diags.note(first_half->loc, "first half annotation here");
      continue;
    }
    sf.half = h;
    sf.annotation_loc = a.loc;
    first_half = &a;
  }
  if (halves == 0) {
    diags.error(fd->getLocation(), "'%0' has a gears annotation but no half; add [[gears::vmm]], "
                                   "[[gears::guest_user]] or [[gears::guest_kernel]]") << fd->getName();
    return;
  }
  if (!fd->getDefinition()) {
    diags.error(fd->getLocation(), "[[gears::%0]] function '%1' has no definition in the service file")
        << half_name(sf.half) << fd->getName();
    return;
  }
  if (sf.on_load) {
    const bool returns_int = fd->getReturnType()->isSpecificBuiltinType(clang::BuiltinType::Int);
    if (sf.half == Half::kernel) {
      // Module start-up: runs in init_module before the kernel hooks are armed.
      if (fd->getNumParams() != 0 || !returns_int)
        diags.error(fd->getLocation(), "[[gears::on_load]] on a [[gears::guest_kernel]] function needs type 'int ()'");
    } else if (sf.half != Half::vmm || fd->getNumParams() != 1 ||
               !is_service_host_param(fd->getParamDecl(0)->getType()) || !returns_int) {
      diags.error(fd->getLocation(), "[[gears::on_load]] needs a [[gears::vmm]] function of type "
                                     "'int (gears::vmm::ServiceHost &)' or a [[gears::guest_kernel]] one of type 'int ()'");
    }
    for (const ServiceFunction& other : svc.functions)
      if (other.on_load && other.half == sf.half) {
        diags.error(fd->getLocation(), "a second [[gears::on_load]] function for the %0 half") << half_name(sf.half);
        diags.note(other.annotation_loc, "the first one is here");
        break;
      }
  }
  if (sf.on_unload) {
    // Module clean-up (rmmod, undeploy): runs after the kernel hooks are gone. VMM halves need
    // none: gears-vmm stops a service's pollers and receive taps itself.
    if (sf.half != Half::kernel || fd->getNumParams() != 0 || !fd->getReturnType()->isVoidType())
      diags.error(fd->getLocation(), "[[gears::on_unload]] needs a [[gears::guest_kernel]] function of type 'void ()'");
    for (const ServiceFunction& other : svc.functions)
      if (other.on_unload) {
        diags.error(fd->getLocation(), "a second [[gears::on_unload]] function");
        diags.note(other.annotation_loc, "the first one is here");
        break;
      }
  }
  for (const Annotation* a : patches) {
    PatchPoint pp;
    pp.handler = def;
    pp.loc = a->loc;
    if (a->name == "interpose") {
      pp.kind = PatchPoint::Kind::interpose;
      if (a->args.size() < 2) {
        diags.error(a->loc, "'gears::interpose' needs a library and a symbol: "
                            "gears::interpose(\"libc.so.6\", \"open\"[, program...])");
        continue;
      }
      pp.library = a->args[0];
      pp.symbol = a->args[1];
      pp.programs.assign(a->args.begin() + 2, a->args.end());
      if (sf.half != Half::user) {
        diags.error(a->loc, "'gears::interpose' needs a [[gears::guest_user]] function");
        continue;
      }
      check_interpose_type(ctx, diags, def, pp);
    } else {
      pp.kind = PatchPoint::Kind::kernel_hook;
      if (a->args.size() != 1) {
        diags.error(a->loc, "'gears::kernel_hook' needs one guest kernel function name");
        continue;
      }
      pp.symbol = a->args[0];
      if (sf.half != Half::kernel) {
        diags.error(a->loc, "'gears::kernel_hook' needs a [[gears::guest_kernel]] function");
        continue;
      }
      if (!def->getReturnType()->isVoidType() || def->getNumParams() != 1 ||
          !is_hook_param(def->getParamDecl(0)->getType())) {
        diags.error(def->getLocation(), "kernel hook handler '%0' must have type "
                                        "'void (const gears::kernel::Hook &)'") << def->getName();
        continue;
      }
      if (opts.kernel_symbols && !opts.kernel_symbols->count(pp.symbol)) {
        diags.error(a->loc, "kernel hook target '%0' is not a symbol of the guest kernel") << pp.symbol;
        continue;
      }
    }
    for (const PatchPoint& other : svc.patch_points)
      if (other.kind == pp.kind && other.symbol == pp.symbol && other.library == pp.library) {
        diags.error(a->loc, "'%0' is already patched by '%1'") << pp.symbol << other.handler->getName();
        diags.note(other.loc, "previous patch point here");
      }
    svc.patch_points.push_back(pp);
  }
  svc.function_index[canon] = svc.functions.size();
  svc.functions.push_back(sf);
}

}  // namespace

void classify(clang::ASTContext& ctx, Diags& diags, const Options& opts, Service& svc) {
  const clang::SourceManager& sm = ctx.getSourceManager();
  NestedFinder(sm, diags).TraverseDecl(ctx.getTranslationUnitDecl());

  for (const clang::Decl* d : ctx.getTranslationUnitDecl()->decls()) {
    if (!in_main_file(sm, d->getLocation())) continue;
    std::vector<Annotation> anns = annotations_of(d);
    if (anns.empty()) continue;
    if (const auto* vd = llvm::dyn_cast<clang::VarDecl>(d)) {
      for (const Annotation& a : anns) {
        if (a.name == "user_half_install") {
          if (!svc.user_half_install.empty()) {
            diags.error(a.loc, "a service file installs its user half in one place");
            diags.note(svc.user_half_install_loc, "previous GEARS_USER_HALF_INSTALL here");
            continue;
          }
          const std::string& p = a.args.empty() ? std::string() : a.args[0];
          if (a.args.size() != 1 || p.size() < 2 || p[0] != '/' || p.back() == '/' || p.size() > 255 ||
              p.find("/../") != std::string::npos || p.find("/./") != std::string::npos ||
              p.find("//") != std::string::npos || p.ends_with("/..") || p.ends_with("/.")) {
            diags.error(a.loc, "GEARS_USER_HALF_INSTALL needs an absolute, normalized file path of at most 255 characters");
            continue;
          }
          svc.user_half_install = p;
          svc.user_half_install_loc = a.loc;
          continue;
        }
        if (a.name != "service") {
          diags.error(a.loc, "'gears::%0' applies to functions, not variables") << a.name;
          continue;
        }
        if (a.args.size() != 2 || a.args[0].empty()) {
          diags.error(a.loc, "'gears::service' needs a name and a version");
          continue;
        }
        if (!svc.name.empty()) {
          diags.error(a.loc, "a service file declares one service");
          diags.note(svc.loc, "previous declaration here");
          continue;
        }
        svc.name = a.args[0];
        svc.version = a.args[1];
        svc.loc = vd->getLocation();
        svc.id = static_cast<std::uint16_t>(gears_abi_service_id(svc.name.c_str()));
      }
    } else if (const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(d)) {
      add_function(ctx, diags, opts, svc, fd, anns);
    }
  }
  if (svc.name.empty())
    diags.error(sm.getLocForStartOfFile(sm.getMainFileID()),
                "service has no GEARS_SERVICE(name, version) declaration");
}

}  // namespace gears::compiler
