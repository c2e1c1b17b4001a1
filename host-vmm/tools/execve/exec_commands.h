// The execve rules' control commands (doc/toolset.md, "execve hook"):
//   {"cmd":"inject-env"[,"rule":"GLOB:NAME=VALUE"|"GLOB:NAME+=VALUE"]}
//       -> {["id":N,]"rules":[the env rules]}          adds a rule (when given), lists
//   {"cmd":"inject-argv"[,"rule":"GLOB:+ARG"|"GLOB:^ARG"|"GLOB:-ARG"|"GLOB:=OLD=>NEW"]}
//       -> {["id":N,]"rules":[the argv rules]}
//   {"cmd":"exec-rules"} -> {"rules":[every rule]}
//   {"cmd":"exec-rule-remove","id":N} -> {"removed":N,"rules":[every rule]}
//       (a deployed service's rule is refused: undeploy removes it)
// A rule: {"id":N,"kind":"env"|"argv","glob":"...","edit":"...","source":"option"|"control"|"deploy"}.
#pragma once

#include "control/command_registry.h"
#include "gears/expected.h"
#include "tools/execve/exec_rules.h"

namespace gears::vmm::execve {

control::Json rule_json(const ExecRule& rule);

Expected<void> register_commands(control::CommandRegistry& registry, ExecRules& rules);

}  // namespace gears::vmm::execve
