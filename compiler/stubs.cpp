// Guest-side hypercall stubs (see stubs.h).
#include "stubs.h"

namespace gears::compiler {

void emit_guest_stub(clang::ASTContext& ctx, Writer& w, const Hypercall& hc, const std::string& call,
                     const std::string& reg_type) {
  const clang::FunctionDecl* fd = hc.fn;
  w << "\n// gearsc: hypercall stub for [[gears::vmm]] " + fd->getNameAsString() + " (" +
           location(ctx, fd->getLocation()) + "), number " + hex(hc.number) + ".\n";
  w.line_here();
  std::string args = hex(hc.number);
  for (unsigned i = 0; i < fd->getNumParams(); ++i) {
    std::string a = "a" + std::to_string(i);
    if (hc.buffer[i])
      args += ", reinterpret_cast<" + reg_type + ">(&" + a + "), sizeof(" + a + ")";
    else
      args += ", static_cast<" + reg_type + ">(" + a + ")";
  }
  w << signature(ctx, fd, fd->getNameAsString()) + " {\n";
  clang::QualType rt = fd->getReturnType();
  if (rt->isVoidType()) {
    w << "  (void)" + call + "(" + args + ");\n";
  } else if (rt->isBooleanType()) {
    w << "  return " + call + "(" + args + ") > 0;\n";
  } else {
    w << "  // A negative errno from the transport (-ENOSYS: no gears-vmm) comes back as is.\n";
    w << "  return static_cast<" + type_name(ctx, rt) + ">(" + call + "(" + args + "));\n";
  }
  w << "}\n";
}

}  // namespace gears::compiler
