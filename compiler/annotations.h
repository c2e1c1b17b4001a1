// Reading the AnnotateAttrs that attributes.cpp attaches for [[gears::...]].
#pragma once

#include <clang/AST/Attr.h>
#include <clang/AST/Decl.h>
#include <clang/AST/Expr.h>

#include <string>
#include <vector>

namespace gears::compiler {

struct Annotation {
  std::string name;               // "vmm", "interpose", ...
  std::vector<std::string> args;  // string literal arguments
  clang::SourceLocation loc;
};

inline std::vector<Annotation> annotations_of(const clang::Decl* d) {
  std::vector<Annotation> out;
  for (const clang::Decl* r : d->redecls()) {
    for (const auto* a : r->specific_attrs<clang::AnnotateAttr>()) {
      if (a->isInherited()) continue;  // a redeclaration repeats its predecessor's attributes
      llvm::StringRef n = a->getAnnotation();
      if (!n.consume_front("gears::")) continue;
      Annotation an{n.str(), {}, a->getLocation()};
      for (const clang::Expr* e : a->args())
        if (const auto* s = llvm::dyn_cast<clang::StringLiteral>(e->IgnoreParenCasts()))
          an.args.push_back(s->getString().str());
      out.push_back(std::move(an));
    }
  }
  return out;
}

}  // namespace gears::compiler
