// The service model every gearsc pass reads and fills: which declarations belong to which
// half, the patch points, the hypercalls. Built by classify, completed by partition/crossing.
#pragma once

#include <clang/AST/Decl.h>
#include <clang/Basic/SourceLocation.h>

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace gears::compiler {

enum class Half { vmm = 0, user = 1, kernel = 2 };
inline constexpr int kHalves = 3;
inline const char* half_name(Half h) {
  switch (h) {
    case Half::vmm: return "vmm";
    case Half::user: return "guest_user";
    case Half::kernel: return "guest_kernel";
  }
  return "?";
}

struct PatchPoint {
  enum class Kind { interpose, kernel_hook } kind;
  std::string library;                // interpose: the library that defines the symbol
  std::string symbol;                 // interpose: the symbol; kernel_hook: the kernel function
  std::vector<std::string> programs;  // interpose: programs to patch (empty: all)
  const clang::FunctionDecl* handler = nullptr;
  clang::SourceLocation loc;
};

struct ServiceFunction {
  const clang::FunctionDecl* decl = nullptr;  // the definition when there is one
  Half half = Half::vmm;
  bool on_load = false;
  bool on_unload = false;  // guest-kernel half only: module clean-up, before the runtime's
  clang::SourceLocation annotation_loc;
};

// A [[gears::vmm]] function called from a guest half: one hypercall number, one stub pair.
struct Hypercall {
  const clang::FunctionDecl* fn = nullptr;
  std::uint32_t number = 0;
  std::set<Half> callers;
  // Per parameter: true when it crosses as (guest pointer, size) instead of one register.
  std::vector<bool> buffer;
  std::vector<bool> writeback;  // non-const reference: the VMM writes the struct back
};

struct Service {
  std::string name, version;
  std::uint16_t id = 0;
  std::string user_half_install;  // GEARS_USER_HALF_INSTALL: the user half's path in the guest
  clang::SourceLocation user_half_install_loc;
  clang::SourceLocation loc;
  std::vector<ServiceFunction> functions;
  std::map<const clang::FunctionDecl*, std::size_t> function_index;  // canonical decl -> index
  std::vector<PatchPoint> patch_points;
  std::vector<Hypercall> hypercalls;
  // Top-level declarations of the service file that each half carries (annotated + closure).
  std::set<const clang::Decl*> half_decls[kHalves];
  // #include lines of the service file, in order (carried into the vmm and user halves).
  std::vector<std::string> includes;

  const ServiceFunction* find(const clang::FunctionDecl* fd) const {
    auto it = function_index.find(fd->getCanonicalDecl());
    return it == function_index.end() ? nullptr : &functions[it->second];
  }
};

}  // namespace gears::compiler
