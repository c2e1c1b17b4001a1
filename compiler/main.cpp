// gearsc: splits one annotated service source into its VMM, guest-user and guest-kernel
// halves, generates the hypercall stubs that join them, and writes the manifest.
//
//   gearsc [-p <build dir>] -o <out dir> service.cpp [-- <extra compiler args>]
//
// The passes (passes.h) run on the parsed translation unit; every problem is a Clang
// diagnostic, so `-- -Xclang -verify` checks `// expected-error {{...}}` comments.
#include <clang/Frontend/CompilerInstance.h>
#include <clang/Frontend/FrontendActions.h>
#include <clang/Lex/PPCallbacks.h>
#include <clang/Lex/Preprocessor.h>
#include <clang/Tooling/CommonOptionsParser.h>
#include <clang/Tooling/Tooling.h>
#include <llvm/Support/CommandLine.h>

#include <filesystem>
#include <fstream>

#include "passes.h"

namespace gears::compiler {
extern int attributes_registered;
}

namespace {

using namespace gears::compiler;

llvm::cl::OptionCategory category("gearsc options");
llvm::cl::opt<std::string> out_dir("o", llvm::cl::desc("Directory for the generated halves and manifest "
                                                       "(without it, gearsc only checks the service)"),
                                   llvm::cl::value_desc("dir"), llvm::cl::cat(category));
llvm::cl::opt<std::string> kernel_symbols_file(
    "kernel-symbols", llvm::cl::desc("Guest kernel symbol list (System.map or one name per line): kernel "
                                     "hook targets are checked against it"),
    llvm::cl::value_desc("file"), llvm::cl::cat(category));
llvm::cl::opt<std::string> service_name(
    "service-name", llvm::cl::desc("Fail unless the service declares this name (gears_add_service's NAME)"),
    llvm::cl::value_desc("name"), llvm::cl::cat(category));
llvm::cl::extrahelp common_help(clang::tooling::CommonOptionsParser::HelpMessage);
llvm::cl::extrahelp more_help(
    "\nAnnotations, outputs and the ABI: doc/sdk.md; internals: doc/gearsc.md.\n");

// Records the service file's own #include lines, carried into the hosted halves.
class IncludeRecorder : public clang::PPCallbacks {
 public:
  IncludeRecorder(const clang::SourceManager& sm, Service& svc) : sm_(sm), svc_(svc) {}
  void InclusionDirective(clang::SourceLocation hash, const clang::Token&, llvm::StringRef name, bool angled,
                          clang::CharSourceRange, clang::OptionalFileEntryRef, llvm::StringRef, llvm::StringRef,
                          const clang::Module*, bool, clang::SrcMgr::CharacteristicKind) override {
    if (!sm_.isInMainFile(hash)) return;
    svc_.includes.push_back("#include " + std::string(angled ? "<" : "\"") + name.str() + (angled ? ">" : "\""));
  }

 private:
  const clang::SourceManager& sm_;
  Service& svc_;
};

class Consumer : public clang::ASTConsumer {
 public:
  Consumer(const Options& opts, Service& svc) : opts_(opts), svc_(svc) {}
  void HandleTranslationUnit(clang::ASTContext& ctx) override {
    Diags diags(ctx.getDiagnostics());
    if (diags.has_errors()) return;  // the service does not compile as C++: nothing to split
    classify(ctx, diags, opts_, svc_);
    if (diags.has_errors()) return;
    if (!opts_.expected_name.empty() && svc_.name != opts_.expected_name)
      diags.error(svc_.loc, "service is named '%0' but the build expects '%1'") << svc_.name << opts_.expected_name;
    partition(ctx, diags, svc_);
    check_crossings(ctx, diags, svc_);
    check_kernel_subset(ctx, diags, svc_);
    if (diags.has_errors() || opts_.out_dir.empty()) return;
    std::error_code ec;
    std::filesystem::create_directories(opts_.out_dir, ec);
    if (ec) {
      diags.error(clang::SourceLocation(), "cannot create '%0': %1") << opts_.out_dir << ec.message();
      return;
    }
    emit_vmm(ctx, diags, svc_, opts_) && emit_user(ctx, diags, svc_, opts_) &&
        emit_kernel(ctx, diags, svc_, opts_) && emit_manifest(diags, svc_, opts_);
  }

 private:
  const Options& opts_;
  Service& svc_;
};

class Action : public clang::ASTFrontendAction {
 public:
  explicit Action(const Options& opts) : opts_(opts) {}
  std::unique_ptr<clang::ASTConsumer> CreateASTConsumer(clang::CompilerInstance& ci, llvm::StringRef) override {
    ci.getPreprocessor().addPPCallbacks(std::make_unique<IncludeRecorder>(ci.getSourceManager(), svc_));
    return std::make_unique<Consumer>(opts_, svc_);
  }

 private:
  const Options& opts_;
  Service svc_;
};

class Factory : public clang::tooling::FrontendActionFactory {
 public:
  explicit Factory(const Options& opts) : opts_(opts) {}
  std::unique_ptr<clang::FrontendAction> create() override { return std::make_unique<Action>(opts_); }

 private:
  const Options& opts_;
};

}  // namespace

int main(int argc, const char** argv) {
  (void)gears::compiler::attributes_registered;
  auto parser = clang::tooling::CommonOptionsParser::create(argc, argv, category, llvm::cl::Required,
                                                            "gearsc: split a gears service into its halves");
  if (!parser) {
    llvm::errs() << "gearsc: " << llvm::toString(parser.takeError()) << "\n";
    return 2;
  }
  if (parser->getSourcePathList().size() != 1) {
    llvm::errs() << "gearsc: expects exactly one service source\n";
    return 2;
  }
  Options opts;
  opts.out_dir = out_dir;
  opts.expected_name = service_name;
  std::set<std::string> symbols;
  if (!kernel_symbols_file.empty()) {
    std::ifstream in(kernel_symbols_file);
    if (!in) {
      llvm::errs() << "gearsc: cannot read kernel symbols '" << kernel_symbols_file << "'\n";
      return 2;
    }
    // System.map lines are "addr type name"; plain lists are "name": take the last field.
    for (std::string line; std::getline(in, line);) {
      auto pos = line.find_last_of(' ');
      std::string name = pos == std::string::npos ? line : line.substr(pos + 1);
      if (!name.empty()) symbols.insert(name);
    }
    opts.kernel_symbols = &symbols;
  }
  clang::tooling::ClangTool tool(parser->getCompilations(), parser->getSourcePathList());
  // The service is C++20 whatever the database says; gearsc defines __GEARSC__ for sources
  // that want to know.
  tool.appendArgumentsAdjuster(clang::tooling::getInsertArgumentAdjuster(
      "-D__GEARSC__=1", clang::tooling::ArgumentInsertPosition::BEGIN));
  // C++20 unless the command line (or the compile database) names a standard itself: the SDK
  // headers need it, and `gearsc x.cpp --` must just work.
  tool.appendArgumentsAdjuster([](const clang::tooling::CommandLineArguments& args, llvm::StringRef) {
    for (const std::string& a : args)
      if (a.rfind("-std=", 0) == 0 || a.rfind("--std=", 0) == 0 || a.rfind("/std:", 0) == 0) return args;
    clang::tooling::CommandLineArguments out = args;
    out.insert(out.begin() + (out.empty() ? 0 : 1), "-std=c++20");
    return out;
  });
  // Clang's own headers (stddef.h, intrinsics) live next to the installed clang, not gearsc.
  tool.appendArgumentsAdjuster(clang::tooling::getInsertArgumentAdjuster(
      "-resource-dir=" GEARS_CLANG_RESOURCE_DIR, clang::tooling::ArgumentInsertPosition::END));
  Factory factory(opts);
  return tool.run(&factory);
}
