// Pass 3: what may cross between a guest half and the VMM half. Integers, enums and bool
// travel in registers; trivially-copyable structs by value or reference travel as (guest
// pointer, size) and the VMM half copies them through guest memory; everything else (raw
// pointers, floating point, non-trivially-copyable types) is rejected here, at the parameter.
// Numbers: GEARS_HC_MAKE(service id, index of the function among [[gears::vmm]] functions).
#include <clang/AST/DeclCXX.h>

#include <optional>
#include <string>

#include "gears/abi/hypercall.h"
#include "passes.h"

namespace gears::compiler {
namespace {

void note_type_decl(Diags& diags, clang::QualType t) {
  if (const auto* rd = t->getAsRecordDecl()) diags.note(rd->getLocation(), "%0 declared here") << rd;
}

// A pointer-like member anywhere inside a crossing type: its path ("ev.inner.name", "[]" for
// array elements) and declaration. Structs, unions, base classes and arrays are searched.
struct PointerMember {
  std::string path;
  clang::QualType type;
  const clang::FieldDecl* field = nullptr;
};

bool pointer_like(clang::QualType t) {
  return t->isPointerType() || t->isReferenceType() || t->isMemberPointerType() || t->isBlockPointerType() ||
         t->isObjCObjectPointerType();
}

std::optional<PointerMember> find_pointer_member(clang::ASTContext& ctx, clang::QualType t, const std::string& path,
                                                 unsigned depth = 0) {
  if (depth > 32) return std::nullopt;  // deeper than any sane struct; the size check limits it too
  t = t.getCanonicalType();
  if (const clang::ArrayType* at = ctx.getAsArrayType(t))
    return find_pointer_member(ctx, at->getElementType(), path + "[]", depth + 1);
  const auto* rd = t->getAsRecordDecl();
  if (!rd || !rd->getDefinition()) return std::nullopt;
  rd = rd->getDefinition();
  if (const auto* cxx = llvm::dyn_cast<clang::CXXRecordDecl>(rd)) {
    for (const clang::CXXBaseSpecifier& base : cxx->bases())
      if (auto found = find_pointer_member(ctx, base.getType(), path, depth + 1)) return found;
  }
  for (const clang::FieldDecl* f : rd->fields()) {
    const std::string field_path = path + "." + (f->getName().empty() ? std::string("<anonymous>") : f->getName().str());
    if (pointer_like(f->getType())) return PointerMember{field_path, f->getType(), f};
    if (auto found = find_pointer_member(ctx, f->getType(), field_path, depth + 1)) return found;
  }
  return std::nullopt;
}

void note_callers(Diags& diags, const Hypercall& hc) {
  for (Half h : hc.callers)
    diags.note(hc.fn->getLocation(), "'%0' is called from the %1 half") << hc.fn->getName() << half_name(h);
}

}  // namespace

void check_crossings(clang::ASTContext& ctx, Diags& diags, Service& svc) {
  for (Hypercall& hc : svc.hypercalls) {
    const clang::FunctionDecl* fd = hc.fn;
    unsigned regs = 0;
    bool ok = true;
    clang::QualType rt = fd->getReturnType();
    if (!rt->isVoidType() && !rt->isIntegralOrEnumerationType()) {
      diags.error(fd->getReturnTypeSourceRange().getBegin(),
                  "result type %0 of '%1' cannot cross from the VMM half; return an integer or "
                  "fill a reference parameter") << rt << fd->getName();
      note_callers(diags, hc);
      ok = false;
    }
    for (const clang::ParmVarDecl* p : fd->parameters()) {
      clang::QualType t = p->getType();
      bool buffer = false, writeback = false;
      clang::QualType value = t;
      if (t->isReferenceType()) {
        value = t->getPointeeType();
        buffer = true;
        writeback = !value.isConstQualified();
      }
      if (value->isIntegralOrEnumerationType() && !t->isReferenceType()) {
        regs += 1;
      } else if (value->isPointerType() || value->isArrayType()) {
        diags.error(p->getLocation(), "parameter '%0' of type %1 cannot cross to the VMM half: a "
                                      "pointer names memory of the calling guest half") << p->getName() << t;
        diags.note(p->getLocation(), "pass a trivially-copyable struct by reference instead");
        ok = false;
      } else if (value->isRecordType()) {
        const auto* rd = value->getAsCXXRecordDecl();
        if (!value.isTriviallyCopyableType(ctx) || (rd && !rd->hasDefaultConstructor())) {
          diags.error(p->getLocation(), "parameter '%0' of type %1 cannot cross halves: it is not "
                                        "trivially copyable and default-constructible") << p->getName() << t;
          note_type_decl(diags, value);
          ok = false;
        } else if (ctx.getTypeSizeInChars(value).getQuantity() > GEARS_MAX_ARG_BYTES) {
          diags.error(p->getLocation(), "parameter '%0' is larger than %1 bytes") << p->getName() << GEARS_MAX_ARG_BYTES;
          ok = false;
        } else if (auto member = find_pointer_member(ctx, value, p->getName().str())) {
          // An address is only meaningful in the address space that made it: a guest address
          // read by the VMM half, or a host address written back into guest memory.
          if (writeback)
            diags.error(p->getLocation(), "parameter '%0' of type %1 cannot cross halves: '%2' is of pointer type %3, "
                                          "and the VMM half would write a host address back into guest memory")
                << p->getName() << t << member->path << member->type;
          else
            diags.error(p->getLocation(), "parameter '%0' of type %1 cannot cross to the VMM half: '%2' is of pointer "
                                          "type %3, an address in the calling guest half that means nothing in the VMM")
                << p->getName() << t << member->path << member->type;
          diags.note(member->field->getLocation(), "'%0' declared here; carry the data itself (an array, an "
                                                   "offset or an id) instead") << member->field->getName();
          ok = false;
        }
        buffer = true;
        regs += 2;
      } else {
        diags.error(p->getLocation(), "parameter '%0' of type %1 cannot cross to the VMM half; use "
                                      "an integer, an enum or a trivially-copyable struct") << p->getName() << t;
        ok = false;
      }
      hc.buffer.push_back(buffer);
      hc.writeback.push_back(writeback);
    }
    if (ok && regs > GEARS_MAX_ARGS) {
      diags.error(fd->getLocation(), "'%0' needs %1 argument registers; a hypercall has %2 (a struct "
                                     "takes two): group the arguments in a struct")
          << fd->getName() << regs << GEARS_MAX_ARGS;
      ok = false;
    }
    if (fd->isVariadic() || fd->isTemplated()) {
      diags.error(fd->getLocation(), "'%0' cannot be called across halves: variadic or template") << fd->getName();
    }
    unsigned index = 0;
    for (const ServiceFunction& f : svc.functions) {
      if (f.half == Half::vmm && !f.on_load) ++index;
      if (f.decl == fd) break;
    }
    hc.number = static_cast<std::uint32_t>(GEARS_HC_MAKE(svc.id, index));
  }
}

}  // namespace gears::compiler
