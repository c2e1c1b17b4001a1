// gearsc's passes, run in this order by main.cpp over one parsed service (like clang-tidy's
// checks: each pass is one file and reports through Clang's DiagnosticsEngine).
#pragma once

#include <clang/AST/ASTContext.h>

#include <set>
#include <string>

#include "diag.h"
#include "model.h"

namespace gears::compiler {

struct Options {
  std::string out_dir;                   // empty: check only
  const std::set<std::string>* kernel_symbols = nullptr;  // guest kernel symbols, if known
  std::string expected_name;             // --service-name
};

// Pass 1 (classify.cpp): annotations -> Service (halves, patch points, identity).
void classify(clang::ASTContext& ctx, Diags& diags, const Options& opts, Service& svc);
// Pass 2 (partition.cpp): each half's closure of helpers, types and variables; calls across
// halves become hypercalls (or errors where they cannot exist).
void partition(clang::ASTContext& ctx, Diags& diags, Service& svc);
// Pass 3 (crossing.cpp): signatures of cross-half calls; assigns hypercall numbers.
void check_crossings(clang::ASTContext& ctx, Diags& diags, Service& svc);
// Pass 4 (kernel_subset.cpp): the guest-kernel half uses only what the kernel can run.
void check_kernel_subset(clang::ASTContext& ctx, Diags& diags, const Service& svc);

// Emitters (one per output). Return false after reporting an I/O error.
std::string manifest_json(const Service& svc, bool pretty = true);
bool emit_vmm(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts);
bool emit_user(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts);
bool emit_kernel(clang::ASTContext& ctx, Diags& diags, const Service& svc, const Options& opts);
bool emit_manifest(Diags& diags, const Service& svc, const Options& opts);

}  // namespace gears::compiler
