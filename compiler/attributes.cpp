// Pass 0: teach Clang the gears:: attribute namespace. Clang drops unknown [[ns::x]]
// attributes, so each spelling is registered as a ParsedAttrInfo that attaches an
// AnnotateAttr "gears::x" carrying the attribute's arguments; later passes read those.
#include <clang/AST/ASTContext.h>
#include <clang/AST/Attr.h>
#include <clang/AST/Expr.h>
#include <clang/Sema/ParsedAttr.h>
#include <clang/Sema/Sema.h>

namespace {

using clang::ParsedAttrInfo;

template <const char* Name, unsigned MaxArgs, bool VarOk>
struct GearsAttr : ParsedAttrInfo {
  GearsAttr() {
    static const std::string full = std::string("gears::") + Name;
    // Clang 19 decides whether to parse a C++11 attribute's arguments by looking the name up
    // *without* its scope among plugin spellings, so the bare name is registered as well;
    // handleDeclAttribute rejects it when the gears:: scope is missing.
    static const Spelling spellings[] = {{clang::AttributeCommonInfo::AS_CXX11, full.c_str()},
                                         {clang::AttributeCommonInfo::AS_CXX11, Name}};
    Spellings = spellings;
    OptArgs = MaxArgs;
  }

  bool diagAppertainsToDecl(clang::Sema& S, const clang::ParsedAttr& attr,
                            const clang::Decl* D) const override {
    if (llvm::isa<clang::FunctionDecl>(D) || (VarOk && llvm::isa<clang::VarDecl>(D))) return true;
    unsigned id = S.getDiagnostics().getCustomDiagID(
        clang::DiagnosticsEngine::Error, "'%0' attribute only applies to %1");
    S.Diag(attr.getLoc(), id) << (std::string("gears::") + Name) << (VarOk ? "variables" : "functions");
    return false;
  }

  AttrHandling handleDeclAttribute(clang::Sema& S, clang::Decl* D,
                                   const clang::ParsedAttr& attr) const override {
    llvm::SmallVector<clang::Expr*, 8> args;
    if (!attr.getScopeName() || attr.getScopeName()->getName() != "gears") {
      unsigned id = S.getDiagnostics().getCustomDiagID(clang::DiagnosticsEngine::Error,
                                                       "write this attribute as [[gears::%0]]");
      S.Diag(attr.getLoc(), id) << Name;
      return AttributeNotApplied;
    }
    for (unsigned i = 0; i < attr.getNumArgs(); ++i) {
      clang::Expr* e = attr.getArgAsExpr(i);
      if (!e || !llvm::isa<clang::StringLiteral>(e->IgnoreParenCasts())) {
        unsigned id = S.getDiagnostics().getCustomDiagID(
            clang::DiagnosticsEngine::Error, "arguments of '%0' must be string literals");
        S.Diag(e ? e->getExprLoc() : attr.getLoc(), id) << (std::string("gears::") + Name);
        return AttributeNotApplied;
      }
      args.push_back(e);
    }
    D->addAttr(clang::AnnotateAttr::Create(S.Context, std::string("gears::") + Name, args.data(),
                                           args.size(), attr.getRange()));
    return AttributeApplied;
  }
};

constexpr char kVmm[] = "vmm";
constexpr char kUser[] = "guest_user";
constexpr char kKernel[] = "guest_kernel";
constexpr char kInterpose[] = "interpose";
constexpr char kKernelHook[] = "kernel_hook";
constexpr char kOnLoad[] = "on_load";
constexpr char kOnUnload[] = "on_unload";
constexpr char kService[] = "service";
constexpr char kUserHalfInstall[] = "user_half_install";

clang::ParsedAttrInfoRegistry::Add<GearsAttr<kVmm, 0, false>> r1("gears-vmm", "runs in the VMM");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kUser, 0, false>> r2("gears-guest-user", "guest processes");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kKernel, 0, false>> r3("gears-guest-kernel", "guest kernel");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kInterpose, 15, false>> r4("gears-interpose", "patch point");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kKernelHook, 1, false>> r5("gears-kernel-hook", "patch point");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kOnLoad, 0, false>> r6("gears-on-load", "start-up");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kService, 2, true>> r7("gears-service", "identity");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kUserHalfInstall, 1, true>> r8("gears-user-half-install", "plugin path");
clang::ParsedAttrInfoRegistry::Add<GearsAttr<kOnUnload, 0, false>> r9("gears-on-unload", "clean-up");

}  // namespace

// Referenced from main.cpp so the linker keeps this object's static registrations.
namespace gears::compiler {
int attributes_registered = 8;
}
