// Shared by the emitters: a line-counting writer (so generated code can switch #line between
// the service file and itself), copying service declarations verbatim, and printing types and
// signatures with fully qualified names (Clang's spelling differs between versions otherwise).
#pragma once

#include <clang/AST/ASTContext.h>

#include <string>
#include <vector>

#include "diag.h"
#include "model.h"

namespace gears::compiler {

class Writer {
 public:
  explicit Writer(std::string path) : path_(std::move(path)) {}
  Writer& operator<<(const std::string& s);
  Writer& operator<<(const char* s) { return *this << std::string(s); }
  // Back to this file's own line numbers after copied service code.
  void line_here();
  // Writes the file (only when the content changed, so builds stay incremental).
  bool save(Diags& diags) const;
  const std::string& text() const { return text_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_, text_;
  unsigned line_ = 1;
};

// Top-level declarations of one half in source order.
std::vector<const clang::Decl*> ordered(const clang::ASTContext& ctx, const Service& svc, Half half);
// The service's text of a declaration with a #line pointing at it (attributes left out).
void copy_decl(clang::ASTContext& ctx, Writer& w, const clang::Decl* d);
// using-directives/declarations of the service file, which hosted halves carry.
void copy_usings(clang::ASTContext& ctx, Writer& w);
std::string type_name(clang::ASTContext& ctx, clang::QualType t, const std::string& placeholder = "");
// "ret name(T0 a0, T1 a1)" with fully qualified types.
std::string signature(clang::ASTContext& ctx, const clang::FunctionDecl* fd, const std::string& name);
std::string arg_list(const clang::FunctionDecl* fd);  // "a0, a1"
std::string location(clang::ASTContext& ctx, clang::SourceLocation loc);  // "file.cpp:12"
std::string c_string(const std::string& s);  // a C string literal
std::string hex(std::uint32_t v);
std::string module_name(const Service& svc);  // C identifier derived from the service name
std::string header_comment(const Service& svc, const std::string& half, const std::string& source);
// The service's source file name ("file.cpp"), for generated-file comments.
std::string service_source(clang::ASTContext& ctx, const Service& svc);
// The top of a hosted (user or VMM) half: the generated-file comment, the half's own
// includes, then the service's includes and using-declarations, so copied code compiles as is.
void hosted_preamble(clang::ASTContext& ctx, Writer& w, const Service& svc, const std::string& half,
                     const std::string& own_includes);

}  // namespace gears::compiler
