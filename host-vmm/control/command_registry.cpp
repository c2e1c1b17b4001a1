#include "control/command_registry.h"

#include <exception>

namespace gears::vmm::control {

CommandRegistry::CommandRegistry() {
  (void)add("help", "list the commands this gears-vmm answers", [this](const Json&) -> Expected<Json> {
    Json cmds = Json::array();
    for (const auto& [name, help] : list()) cmds.push_back({{"name", name}, {"help", help}});
    return Json{{"commands", std::move(cmds)}};
  });
  (void)add("stats", "counters of every tool", [this](const Json&) -> Expected<Json> {
    std::vector<std::pair<std::string, std::shared_ptr<const std::function<Json()>>>> providers;
    {
      std::lock_guard lock(mu_);
      providers.assign(stats_.begin(), stats_.end());
    }
    Json stats = Json::object();
    for (const auto& [section, fn] : providers) stats[section] = (*fn)();
    return Json{{"stats", std::move(stats)}};
  });
}

Expected<void> CommandRegistry::add_stats(std::string section, std::function<Json()> provider) {
  if (section.empty() || !provider) return fail("stats section needs a name and a provider");
  std::lock_guard lock(mu_);
  if (stats_.count(section)) return fail("stats section \"" + section + "\" is already registered");
  stats_.emplace(std::move(section), std::make_shared<const std::function<Json()>>(std::move(provider)));
  return {};
}

Expected<void> CommandRegistry::add(std::string name, std::string help, Handler handler) {
  if (name.empty() || !handler) return fail("control command needs a name and a handler");
  std::lock_guard lock(mu_);
  if (commands_.count(name)) return fail("control command \"" + name + "\" is already registered");
  commands_.emplace(std::move(name), Entry{std::move(help), std::make_shared<const Handler>(std::move(handler))});
  return {};
}

void CommandRegistry::remove(const std::string& name) {
  std::lock_guard lock(mu_);
  commands_.erase(name);
}

std::vector<std::pair<std::string, std::string>> CommandRegistry::list() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, e] : commands_) out.emplace_back(name, e.help);
  return out;
}

Json CommandRegistry::error_reply(std::string_view message) {
  return Json{{"ok", false}, {"error", std::string(message)}};
}

std::string CommandRegistry::to_line(const Json& reply) {
  return reply.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json CommandRegistry::handle(const Json& request) const {
  if (!request.is_object()) return error_reply("request must be a JSON object like {\"cmd\":\"help\"}");
  auto cmd = request.find("cmd");
  if (cmd == request.end() || !cmd->is_string()) return error_reply("request has no \"cmd\" string");
  const auto& name = cmd->get_ref<const std::string&>();

  std::shared_ptr<const Handler> handler;
  {
    std::lock_guard lock(mu_);
    auto it = commands_.find(name);
    if (it != commands_.end()) handler = it->second.handler;
  }
  if (!handler) return error_reply("unknown command \"" + name + "\" (try \"help\")");

  try {
    Expected<Json> r = (*handler)(request);
    if (!r) return error_reply(r.error().what());
    Json reply = Json::object();
    reply["ok"] = true;
    if (r->is_object()) {
      for (auto& [k, v] : r->items())
        if (k != "ok") reply[k] = std::move(v);
    } else if (!r->is_null()) {
      reply["result"] = std::move(*r);
    }
    return reply;
  } catch (const Json::exception& e) {
    // A wrong argument type, e.g. {"cmd":"intercept","nr":"x"}.
    return error_reply("bad arguments for \"" + name + "\": " + e.what());
  } catch (const std::exception& e) {
    return error_reply("command \"" + name + "\" failed: " + e.what());
  }
}

std::string CommandRegistry::handle_line(std::string_view line) const {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  Json request = Json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return to_line(error_reply("request is not valid JSON"));
  return to_line(handle(request));
}

}  // namespace gears::vmm::control
