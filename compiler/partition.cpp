// Pass 2: which top-level declarations each half carries. Starting from the half's annotated
// functions, follow every reference (calls, variables, types) to declarations of the service
// file: unannotated helpers, types and globals join the half (each half gets its own copy);
// a [[gears::vmm]] function reached from a guest half becomes a hypercall; any other call into
// another half is an error.
#include <clang/AST/RecursiveASTVisitor.h>
#include <clang/Basic/SourceManager.h>

#include <deque>

#include "passes.h"

namespace gears::compiler {
namespace {

struct Ref {
  const clang::Decl* top;  // top-level declaration of the service file
  const clang::Decl* target;
  clang::SourceLocation loc;
};

class RefCollector : public clang::RecursiveASTVisitor<RefCollector> {
 public:
  explicit RefCollector(const clang::SourceManager& sm) : sm_(sm) {}
  bool shouldVisitImplicitCode() const { return true; }
  bool shouldVisitTemplateInstantiations() const { return true; }

  bool VisitDeclRefExpr(clang::DeclRefExpr* e) { add(e->getDecl(), e->getExprLoc()); return true; }
  bool VisitMemberExpr(clang::MemberExpr* e) { add(e->getMemberDecl(), e->getExprLoc()); return true; }
  bool VisitCXXConstructExpr(clang::CXXConstructExpr* e) { add(e->getConstructor(), e->getExprLoc()); return true; }
  bool VisitTypeLoc(clang::TypeLoc tl) {
    const clang::Type* t = tl.getTypePtr();
    if (const auto* td = t->getAs<clang::TypedefType>()) add(td->getDecl(), tl.getBeginLoc());
    if (const auto* tag = t->getAsTagDecl()) add(tag, tl.getBeginLoc());
    return true;
  }

  std::vector<Ref> refs;

 private:
  void add(const clang::Decl* d, clang::SourceLocation loc) {
    if (!d) return;
    const clang::Decl* top = d;
    while (top->getDeclContext() && !top->getDeclContext()->isTranslationUnit()) {
      const auto* parent = llvm::dyn_cast<clang::Decl>(top->getDeclContext());
      if (!parent) return;
      top = parent;
    }
    if (!sm_.isInMainFile(sm_.getExpansionLoc(top->getLocation()))) return;
    refs.push_back({top, d, loc});
  }
  const clang::SourceManager& sm_;
};

}  // namespace

void partition(clang::ASTContext& ctx, Diags& diags, Service& svc) {
  const clang::SourceManager& sm = ctx.getSourceManager();
  for (int hi = 0; hi < kHalves; ++hi) {
    const Half half = static_cast<Half>(hi);
    std::set<const clang::Decl*>& carried = svc.half_decls[hi];
    std::deque<const clang::Decl*> work;
    auto carry = [&](const clang::Decl* d) {
      for (const clang::Decl* r : d->redecls())
        if (sm.isInMainFile(sm.getExpansionLoc(r->getLocation())) && carried.insert(r).second)
          work.push_back(r);
    };
    for (const ServiceFunction& f : svc.functions)
      if (f.half == half) carry(f.decl);

    while (!work.empty()) {
      const clang::Decl* d = work.front();
      work.pop_front();
      RefCollector rc(sm);
      const auto* fd = llvm::dyn_cast<clang::FunctionDecl>(d);
      const ServiceFunction* sf = fd ? svc.find(fd) : nullptr;
      if (sf && sf->half != half) {
        // A stub: only the signature's types come along.
        if (const auto* tsi = fd->getTypeSourceInfo()) rc.TraverseTypeLoc(tsi->getTypeLoc());
      } else {
        rc.TraverseDecl(const_cast<clang::Decl*>(d));
      }
      for (const Ref& r : rc.refs) {
        if (r.top == d || carried.count(r.top)) continue;
        const auto* callee = llvm::dyn_cast<clang::FunctionDecl>(r.top);
        const ServiceFunction* target = callee ? svc.find(callee) : nullptr;
        if (target && target->half != half) {
          if (target->half == Half::vmm) {
            // Guest half -> VMM: a hypercall (numbered and checked by the crossing pass).
            auto it = std::find_if(svc.hypercalls.begin(), svc.hypercalls.end(),
                                   [&](const Hypercall& h) { return h.fn == target->decl; });
            if (it == svc.hypercalls.end()) {
              svc.hypercalls.push_back({target->decl, 0, {}, {}, {}});
              it = svc.hypercalls.end() - 1;
            }
            it->callers.insert(half);
            carry(target->decl);
            continue;
          }
          diags.error(r.loc, "'%0' runs in the %1 half and cannot be called from the %2 half")
              << callee->getName() << half_name(target->half) << half_name(half);
          diags.note(target->annotation_loc, "'%0' is placed in the %1 half here")
              << callee->getName() << half_name(target->half);
          continue;
        }
        // The GEARS_SERVICE variable stays out of the halves: the emitters generate identity.
        if (const auto* vd = llvm::dyn_cast<clang::VarDecl>(r.top); vd && vd->hasAttr<clang::AnnotateAttr>()) continue;
        carry(r.top);
      }
    }
  }
  // Deterministic order for numbering and emission: source order.
  std::sort(svc.hypercalls.begin(), svc.hypercalls.end(), [&](const Hypercall& a, const Hypercall& b) {
    return sm.isBeforeInTranslationUnit(a.fn->getLocation(), b.fn->getLocation());
  });
}

}  // namespace gears::compiler
