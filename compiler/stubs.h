// The guest side of a hypercall stub pair: the same signature as the [[gears::vmm]] function,
// marshalling its arguments into registers per abi/hypercall.h. Shared by the user and kernel
// emitters; the VMM side (unmarshal + dispatch) is in emit_vmm.cpp.
#pragma once

#include "emit_common.h"

namespace gears::compiler {

// `call` is the hypercall primitive: "::gears::user::hypercall" or "::gears::kernel::hypercall".
void emit_guest_stub(clang::ASTContext& ctx, Writer& w, const Hypercall& hc, const std::string& call,
                     const std::string& reg_type);

}  // namespace gears::compiler
