// Clang-style diagnostics for gearsc passes: everything goes through Clang's DiagnosticsEngine
// (so `file:line:col`, carets, notes and -verify work as for compiler errors).
#pragma once

#include <clang/Basic/Diagnostic.h>

namespace gears::compiler {

class Diags {
 public:
  explicit Diags(clang::DiagnosticsEngine& engine) : engine_(engine) {}

  template <unsigned N>
  clang::DiagnosticBuilder error(clang::SourceLocation loc, const char (&fmt)[N]) {
    return report(clang::DiagnosticsEngine::Error, loc, fmt);
  }
  template <unsigned N>
  clang::DiagnosticBuilder warning(clang::SourceLocation loc, const char (&fmt)[N]) {
    return report(clang::DiagnosticsEngine::Warning, loc, fmt);
  }
  template <unsigned N>
  clang::DiagnosticBuilder note(clang::SourceLocation loc, const char (&fmt)[N]) {
    return report(clang::DiagnosticsEngine::Note, loc, fmt);
  }
  bool has_errors() const { return engine_.hasErrorOccurred(); }

 private:
  template <unsigned N>
  clang::DiagnosticBuilder report(clang::DiagnosticsEngine::Level level, clang::SourceLocation loc,
                                  const char (&fmt)[N]) {
    return engine_.Report(loc, engine_.getCustomDiagID(level, fmt));
  }
  clang::DiagnosticsEngine& engine_;
};

}  // namespace gears::compiler
