// Pass 4: the guest-kernel half is compiled with the guest kernel's kbuild flags and linked
// into a module: no exceptions, no RTTI, no global constructors/destructors, no thread-safe
// statics, no operator new/delete, no floating point, and no libc/libstdc++ (only the service's
// own code, compiler builtins, fixed-width integer typedefs and the gears kernel API from
// <gears/kernel.h>). Each violation is reported where it is written, not by kbuild later.
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/Basic/SourceManager.h>

#include "passes.h"

namespace gears::compiler {
namespace {

class KernelChecker : public clang::RecursiveASTVisitor<KernelChecker> {
 public:
  KernelChecker(clang::ASTContext& ctx, Diags& diags) : ctx_(ctx), sm_(ctx.getSourceManager()), diags_(diags) {}

  bool VisitCXXThrowExpr(clang::CXXThrowExpr* e) {
    diags_.error(e->getThrowLoc(), "exceptions are not available in the guest-kernel half");
    return true;
  }
  bool VisitCXXTryStmt(clang::CXXTryStmt* s) {
    diags_.error(s->getTryLoc(), "exceptions are not available in the guest-kernel half");
    return true;
  }
  bool VisitCXXDynamicCastExpr(clang::CXXDynamicCastExpr* e) {
    diags_.error(e->getExprLoc(), "dynamic_cast needs RTTI, which the guest-kernel half does not have");
    return true;
  }
  bool VisitCXXTypeidExpr(clang::CXXTypeidExpr* e) {
    diags_.error(e->getExprLoc(), "typeid needs RTTI, which the guest-kernel half does not have");
    return true;
  }
  bool VisitCXXNewExpr(clang::CXXNewExpr* e) {
    diags_.error(e->getExprLoc(), "operator new is not available in the guest-kernel half");
    return true;
  }
  bool VisitCXXDeleteExpr(clang::CXXDeleteExpr* e) {
    diags_.error(e->getExprLoc(), "operator delete is not available in the guest-kernel half");
    return true;
  }
  bool VisitExpr(clang::Expr* e) {
    if (e->getType()->isRealFloatingType() && !reported_float_.count(line_of(e->getExprLoc()))) {
      reported_float_.insert(line_of(e->getExprLoc()));
      diags_.error(e->getExprLoc(), "floating point is not available in the guest-kernel half");
    }
    return true;
  }
  bool VisitVarDecl(clang::VarDecl* v) {
    if (llvm::isa<clang::ParmVarDecl>(v)) return true;
    if (v->hasGlobalStorage() && !v->isStaticLocal()) {
      if (v->hasInit() && !v->hasConstantInitialization())
        diags_.error(v->getLocation(), "global '%0' needs a constructor at load time; the guest-kernel "
                                       "half has no global constructors (use a constant initializer)") << v->getName();
      if (v->needsDestruction(ctx_))
        diags_.error(v->getLocation(), "global '%0' needs a destructor; the guest-kernel half has no "
                                       "global destructors") << v->getName();
    } else if (v->isStaticLocal() && v->hasInit() && !v->hasConstantInitialization()) {
      diags_.error(v->getLocation(), "static local '%0' needs thread-safe initialization (libstdc++); "
                                     "use a constant initializer") << v->getName();
    }
    return true;
  }
  bool VisitDeclRefExpr(clang::DeclRefExpr* e) { check_available(e->getDecl(), e->getExprLoc()); return true; }
  bool VisitCXXConstructExpr(clang::CXXConstructExpr* e) {
    if (!e->getConstructor()->isTrivial()) check_available(e->getConstructor(), e->getExprLoc());
    return true;
  }
  bool VisitTypeLoc(clang::TypeLoc tl) {
    const clang::Type* t = tl.getTypePtr();
    if (const auto* ut = llvm::dyn_cast<clang::UsingType>(t)) {
      // std::uint32_t is `using ::uint32_t;` in <cstdint>: the kernel build has only ::uint32_t.
      const clang::UsingShadowDecl* found = ut->getFoundDecl();
      if (found->getDeclContext()->isStdNamespace() && reported_.insert(found).second)
        diags_.error(tl.getBeginLoc(), "'std::%0' is not available in the guest-kernel half; use '%0'")
            << found->getName();
      return true;
    }
    if (const auto* td = t->getAs<clang::TypedefType>()) {
      // uint32_t, size_t...: typedefs of builtin types exist in the kernel build too.
      // The kernel build has them in the global namespace only (no <cstdint>).
      const clang::TypedefNameDecl* tdd = td->getDecl();
      if (!tdd->getUnderlyingType()->getCanonicalTypeInternal()->isBuiltinType()) {
        check_available(tdd, tl.getBeginLoc());
      } else if (tdd->getDeclContext()->isStdNamespace() && reported_.insert(tdd).second) {
        diags_.error(tl.getBeginLoc(), "'std::%0' is not available in the guest-kernel half; use '%0'")
            << tdd->getName();
      }
    } else if (const auto* tag = t->getAsTagDecl(); tag && llvm::isa<clang::TagType>(t)) {
      check_available(tag, tl.getBeginLoc());
    }
    return true;
  }

 private:
  unsigned line_of(clang::SourceLocation l) { return sm_.getExpansionLineNumber(l); }

  // Declarations from outside the service file: only the SDK's kernel API and builtins.
  void check_available(const clang::Decl* d, clang::SourceLocation use) {
    if (!d || sm_.isInMainFile(sm_.getExpansionLoc(d->getLocation()))) return;
    // Compiler builtins are fine, library builtins (strlen, memcpy...) are libc.
    if (const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(d);
        fd && fd->getBuiltinID() && !ctx_.BuiltinInfo.isPredefinedLibFunction(fd->getBuiltinID()))
      return;
    if (llvm::isa<clang::ParmVarDecl>(d) || d->isImplicit()) return;
    llvm::StringRef file = sm_.getFilename(sm_.getExpansionLoc(d->getLocation()));
    if (file.ends_with("gears/kernel.h") || file.contains("gears/abi/")) return;
    const auto* nd = llvm::dyn_cast<clang::NamedDecl>(d);
    if (!nd || !reported_.insert(d).second) return;
    diags_.error(use, "'%0' is not available in the guest-kernel half (no libc or libstdc++; use "
                      "the service's own code or <gears/kernel.h>)") << nd->getQualifiedNameAsString();
    diags_.note(d->getLocation(), "declared here");
  }

  clang::ASTContext& ctx_;
  const clang::SourceManager& sm_;
  Diags& diags_;
  std::set<const clang::Decl*> reported_;
  std::set<unsigned> reported_float_;
};

}  // namespace

void check_kernel_subset(clang::ASTContext& ctx, Diags& diags, const Service& svc) {
  KernelChecker checker(ctx, diags);
  std::vector<const clang::Decl*> decls(svc.half_decls[static_cast<int>(Half::kernel)].begin(),
                                        svc.half_decls[static_cast<int>(Half::kernel)].end());
  std::sort(decls.begin(), decls.end(), [&](const clang::Decl* a, const clang::Decl* b) {
    return ctx.getSourceManager().isBeforeInTranslationUnit(a->getLocation(), b->getLocation());
  });
  for (const clang::Decl* d : decls) {
    const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(d);
    const ServiceFunction* sf = fd ? svc.find(fd) : nullptr;
    if (sf && sf->half == Half::vmm) continue;  // a hypercall stub: generated, not user code
    checker.TraverseDecl(const_cast<clang::Decl*>(d));
  }
}

}  // namespace gears::compiler
