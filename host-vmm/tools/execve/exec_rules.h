// The one home of the execve tool's rules: per program glob, an environment edit (env_inject.h)
// or an argument edit (argv_inject.h). Rules come from gears-vmm's options (--inject-env,
// --inject-argv), the control commands (exec_commands.h) and deploy (a service's LD_PRELOAD rule
// for new processes, through GuestInjector::add_exec_env); each gets an id for removal.
// `edits_for(file)` gives what applies to one execve, in the order the rules were added.
//
// Thread-safe: vCPU threads call edits_for at every execve exit while the control thread adds
// and removes rules. The activation callback runs under the store's lock when the first rule
// arrives and when the last one goes (the toolset selects execve/execveat then), so rules and
// the selection never disagree.
//
// Rule text (options and control commands; the glob ends at the first ':'):
//   env:  GLOB:NAME=VALUE     set NAME
//         GLOB:NAME+=VALUE    prepend VALUE to NAME's ':' list (LD_PRELOAD, PATH), or set it
//   argv: GLOB:+ARG           append ARG
//         GLOB:^ARG           insert ARG right after argv[0]
//         GLOB:-ARG           remove every argument equal to ARG
//         GLOB:=OLD=>NEW      replace every argument equal to OLD by NEW (OLD ends at the first "=>")
// After the operator character everything is taken verbatim (ARG may start with '-' or hold ':').
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "gears/expected.h"
#include "tools/execve/exec_inject.h"

namespace gears::vmm::execve {

template <class Edit>
struct Rule {
  std::string pattern;  // fnmatch glob over the execve file name or its last component
  Edit edit;
};
using EnvRule = Rule<EnvEdit>;
using ArgvRule = Rule<ArgvEdit>;
using AnyEdit = std::variant<EnvEdit, ArgvEdit>;

Expected<EnvRule> parse_env_rule(std::string_view spec);
Expected<ArgvRule> parse_argv_rule(std::string_view spec);
// The edit part of the rule text ("LD_PRELOAD+=/x.so", "+--verbose", "=old=>new").
std::string edit_text(const EnvEdit& edit);
std::string edit_text(const ArgvEdit& edit);

// fnmatch(pattern) over the whole file name, else over its last component.
bool program_matches(std::string_view pattern, std::string_view file);

// Who added a rule (shown in the listing; deploy's rules are removed by undeploy only).
inline constexpr const char* kFromOption = "option";
inline constexpr const char* kFromControl = "control";
inline constexpr const char* kFromDeploy = "deploy";

struct ExecRule {
  uint64_t id = 0;
  std::string pattern;
  AnyEdit edit;
  std::string source;
  const char* kind() const { return std::holds_alternative<EnvEdit>(edit) ? "env" : "argv"; }
};

class ExecRules {
 public:
  static constexpr size_t kMaxRules = 1024;
  static constexpr size_t kMaxText = 4096;  // a glob, a name, a value, an argument

  // Called with true when the first rule is added (an error refuses that rule) and with false
  // when the last one is removed; under the store's lock.
  using Activation = std::function<Expected<void>(bool active)>;
  explicit ExecRules(Activation activation = {}) : activation_(std::move(activation)) {}
  ExecRules(const ExecRules&) = delete;
  ExecRules& operator=(const ExecRules&) = delete;

  // Checks the rule (bounded texts, a variable name without '=', at most kMaxRules) and returns
  // its id (1, 2, ...; never reused).
  Expected<uint64_t> add(std::string pattern, AnyEdit edit, std::string source);
  Expected<uint64_t> add(const EnvRule& rule, std::string source) { return add(rule.pattern, rule.edit, std::move(source)); }
  Expected<uint64_t> add(const ArgvRule& rule, std::string source) { return add(rule.pattern, rule.edit, std::move(source)); }
  bool remove(uint64_t id);  // false: no such rule
  std::optional<ExecRule> find(uint64_t id) const;
  std::vector<ExecRule> list() const;

  bool empty() const { return size() == 0; }  // no lock: every execve asks
  size_t size() const { return count_.load(std::memory_order_acquire); }
  ExecEdits edits_for(std::string_view file) const;

 private:
  Activation activation_;
  mutable std::mutex mu_;
  std::vector<ExecRule> rules_;  // in the order added
  uint64_t next_id_ = 1;
  std::atomic<size_t> count_{0};
};

}  // namespace gears::vmm::execve
