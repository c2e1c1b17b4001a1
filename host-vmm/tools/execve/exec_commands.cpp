#include "tools/execve/exec_commands.h"

namespace gears::vmm::execve {

using control::Json;

namespace {
Json rules_json(const ExecRules& rules, const char* kind) {
  Json list = Json::array();
  for (const auto& r : rules.list())
    if (!kind || std::string_view(r.kind()) == kind) list.push_back(rule_json(r));
  return list;
}

// inject-env / inject-argv: add the request's "rule" (if any), list the rules of that kind.
template <class Parse>
control::Handler add_or_list(ExecRules& rules, const char* kind, Parse parse) {
  return [&rules, kind, parse](const Json& req) -> Expected<Json> {
    Json out = Json::object();
    if (req.contains("rule")) {
      auto r = parse(req.at("rule").get<std::string>());
      if (!r) return fail(r.error());
      auto id = rules.add(*r, kFromControl);
      if (!id) return fail(id.error());
      out["id"] = *id;
    }
    out["rules"] = rules_json(rules, kind);
    return out;
  };
}
}  // namespace

Json rule_json(const ExecRule& r) {
  return Json{{"id", r.id},
              {"kind", r.kind()},
              {"glob", r.pattern},
              {"edit", std::visit([](const auto& e) { return edit_text(e); }, r.edit)},
              {"source", r.source}};
}

Expected<void> register_commands(control::CommandRegistry& registry, ExecRules& rules) {
  GEARS_TRY(registry.add("inject-env",
                         "add an execve environment rule: \"rule\":\"GLOB:NAME=VALUE\" (or NAME+=VALUE: prepend "
                         "with ':'); none: list the env rules",
                         add_or_list(rules, "env", [](const std::string& s) { return parse_env_rule(s); })));
  GEARS_TRY(registry.add("inject-argv",
                         "add an execve argument rule: \"rule\":\"GLOB:+ARG\" (append), \"GLOB:^ARG\" (after "
                         "argv[0]), \"GLOB:-ARG\" (remove), \"GLOB:=OLD=>NEW\" (replace); none: list the argv rules",
                         add_or_list(rules, "argv", [](const std::string& s) { return parse_argv_rule(s); })));
  GEARS_TRY(registry.add("exec-rules", "the execve rules (environment and arguments) with their ids",
                         [&rules](const Json&) -> Expected<Json> { return Json{{"rules", rules_json(rules, nullptr)}}; }));
  GEARS_TRY(registry.add("exec-rule-remove", "remove an execve rule: \"id\":N (from exec-rules)",
                         [&rules](const Json& req) -> Expected<Json> {
                           const auto& v = req.at("id");
                           if (!v.is_number_integer() || v.get<int64_t>() <= 0)
                             return fail("\"id\" must be a positive integer");
                           const auto id = v.get<uint64_t>();
                           auto r = rules.find(id);
                           if (!r) return fail("no exec rule " + std::to_string(id));
                           if (r->source == kFromDeploy)
                             return fail("exec rule " + std::to_string(id) +
                                         " belongs to a deployed service: undeploy the service to remove it");
                           if (!rules.remove(id)) return fail("no exec rule " + std::to_string(id));
                           return Json{{"removed", id}, {"rules", rules_json(rules, nullptr)}};
                         }));
  return {};
}

}  // namespace gears::vmm::execve
