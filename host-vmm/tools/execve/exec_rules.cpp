#include "tools/execve/exec_rules.h"

#include <fnmatch.h>

#include <algorithm>

namespace gears::vmm::execve {

namespace {
std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

Expected<void> check_text(const char* what, std::string_view s) {
  if (s.size() > ExecRules::kMaxText)
    return fail(std::string(what) + " of " + std::to_string(s.size()) + " bytes, more than " +
                std::to_string(ExecRules::kMaxText));
  if (s.find('\0') != std::string_view::npos) return fail(std::string(what) + " holds a NUL byte");
  return {};
}

Expected<void> check_edit(const EnvEdit& e) {
  if (e.name.empty() || e.name.find_first_of("= \t") != std::string::npos)
    return fail("bad variable name " + quoted(e.name));
  GEARS_TRY(check_text("a variable name", e.name));
  return check_text("a value", e.value);
}

Expected<void> check_edit(const ArgvEdit& e) {
  GEARS_TRY(check_text("an argument", e.arg));
  return check_text("an argument", e.with);
}
}  // namespace

Expected<EnvRule> parse_env_rule(std::string_view spec) {
  const std::string what = "env rule " + quoted(spec);
  const auto colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return fail(what + ": want GLOB:NAME=VALUE or GLOB:NAME+=VALUE");
  EnvRule r;
  r.pattern = spec.substr(0, colon);
  const std::string_view rest = spec.substr(colon + 1);
  const auto eq = rest.find('=');
  if (eq == std::string_view::npos || eq == 0) return fail(what + ": want NAME=VALUE after the ':'");
  std::string name(rest.substr(0, eq));
  r.edit.mode = EnvEdit::Mode::kSet;
  if (name.back() == '+') {
    name.pop_back();
    r.edit.mode = EnvEdit::Mode::kPrepend;
  }
  if (name.empty() || name.find_first_of("= \t") != std::string::npos) return fail(what + ": bad variable name");
  r.edit.name = std::move(name);
  r.edit.value = rest.substr(eq + 1);
  return r;
}

Expected<ArgvRule> parse_argv_rule(std::string_view spec) {
  const std::string what = "argv rule " + quoted(spec);
  const auto colon = spec.find(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == spec.size())
    return fail(what + ": want GLOB:+ARG, GLOB:^ARG, GLOB:-ARG or GLOB:=OLD=>NEW");
  ArgvRule r;
  r.pattern = spec.substr(0, colon);
  const std::string_view body = spec.substr(colon + 2);
  using Op = ArgvEdit::Op;
  switch (spec[colon + 1]) {
    case '+': r.edit = {Op::kAppend, std::string(body), {}}; break;
    case '^': r.edit = {Op::kInsertFirst, std::string(body), {}}; break;
    case '-': r.edit = {Op::kRemove, std::string(body), {}}; break;
    case '=': {
      const auto arrow = body.find("=>");
      if (arrow == std::string_view::npos) return fail(what + ": want GLOB:=OLD=>NEW to replace an argument");
      r.edit = {Op::kReplace, std::string(body.substr(0, arrow)), std::string(body.substr(arrow + 2))};
      break;
    }
    default:
      return fail(what + ": the edit after GLOB: starts with + (append), ^ (after argv[0]), - (remove) or "
                  "= (=OLD=>NEW), not " + quoted(spec.substr(colon + 1, 1)));
  }
  return r;
}

std::string edit_text(const EnvEdit& e) {
  return e.name + (e.mode == EnvEdit::Mode::kPrepend ? "+=" : "=") + e.value;
}

std::string edit_text(const ArgvEdit& e) {
  switch (e.op) {
    case ArgvEdit::Op::kAppend: return "+" + e.arg;
    case ArgvEdit::Op::kInsertFirst: return "^" + e.arg;
    case ArgvEdit::Op::kRemove: return "-" + e.arg;
    case ArgvEdit::Op::kReplace: return "=" + e.arg + "=>" + e.with;
  }
  return "?";
}

bool program_matches(std::string_view pattern, std::string_view file) {
  const std::string p(pattern), f(file);
  if (fnmatch(p.c_str(), f.c_str(), 0) == 0) return true;
  const auto slash = f.rfind('/');
  return slash != std::string::npos && fnmatch(p.c_str(), f.c_str() + slash + 1, 0) == 0;
}

Expected<uint64_t> ExecRules::add(std::string pattern, AnyEdit edit, std::string source) {
  if (pattern.empty()) return fail("an exec rule needs a program glob");
  GEARS_TRY(check_text("a glob", pattern));
  GEARS_TRY(std::visit([](const auto& e) { return check_edit(e); }, edit));
  std::lock_guard lock(mu_);
  if (rules_.size() >= kMaxRules) return fail("already " + std::to_string(kMaxRules) + " exec rules");
  if (rules_.empty() && activation_) GEARS_TRY(activation_(true));
  const uint64_t id = next_id_++;
  rules_.push_back({id, std::move(pattern), std::move(edit), std::move(source)});
  count_.store(rules_.size(), std::memory_order_release);
  return id;
}

bool ExecRules::remove(uint64_t id) {
  std::lock_guard lock(mu_);
  auto it = std::find_if(rules_.begin(), rules_.end(), [id](const ExecRule& r) { return r.id == id; });
  if (it == rules_.end()) return false;
  rules_.erase(it);
  count_.store(rules_.size(), std::memory_order_release);
  if (rules_.empty() && activation_) (void)activation_(false);
  return true;
}

std::optional<ExecRule> ExecRules::find(uint64_t id) const {
  std::lock_guard lock(mu_);
  for (const auto& r : rules_)
    if (r.id == id) return r;
  return std::nullopt;
}

std::vector<ExecRule> ExecRules::list() const {
  std::lock_guard lock(mu_);
  return rules_;
}

ExecEdits ExecRules::edits_for(std::string_view file) const {
  ExecEdits out;
  if (empty()) return out;
  std::lock_guard lock(mu_);
  for (const auto& r : rules_) {
    if (!program_matches(r.pattern, file)) continue;
    if (const auto* env = std::get_if<EnvEdit>(&r.edit)) out.env.push_back(*env);
    else out.argv.push_back(std::get<ArgvEdit>(r.edit));
  }
  return out;
}

}  // namespace gears::vmm::execve
