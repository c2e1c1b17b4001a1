// The control commands of ServiceManager (doc/deploy.md):
//   {"cmd":"deploy","bundle":"/abs/x.gears"[,"pid":N|"exe":GLOB|"library":NAME][,"timeout_ms":N]}
//        -> {"ok":true,"service":{status}}
//   {"cmd":"undeploy","service":NAME[,"timeout_ms":N]} -> {"ok":true,"service":NAME,"errors":[...],"undeploy_ms":T}
//   {"cmd":"services"} -> {"ok":true,"services":[{status}...]}
#include "deploy/service_manager.h"

namespace gears::vmm::deploy {

using control::Json;

namespace {

constexpr int64_t kMaxTimeoutMs = 600'000;

Expected<std::chrono::milliseconds> timeout_of(const Json& req) {
  if (!req.contains("timeout_ms")) return std::chrono::milliseconds(30'000);
  const int64_t ms = req.at("timeout_ms").get<int64_t>();
  if (ms <= 0 || ms > kMaxTimeoutMs) return fail("\"timeout_ms\" must be 1.." + std::to_string(kMaxTimeoutMs));
  return std::chrono::milliseconds(ms);
}

Expected<DeployOptions> deploy_options(const Json& req) {
  DeployOptions o;
  auto t = timeout_of(req);
  if (!t) return fail(t.error());
  o.timeout = *t;
  int given = 0;
  if (req.contains("pid")) {
    const int64_t pid = req.at("pid").get<int64_t>();
    if (pid <= 0 || pid > INT32_MAX) return fail("\"pid\" must be a positive process id");
    o.selector = ProcessSelector::of(ProcessSelector::Kind::pid, pid, "");
    ++given;
  }
  for (const auto& [key, kind] : {std::pair{"exe", ProcessSelector::Kind::exe_glob},
                                  std::pair{"library", ProcessSelector::Kind::maps_library}}) {
    if (!req.contains(key)) continue;
    std::string pattern = req.at(key).get<std::string>();
    if (pattern.empty() || pattern.size() > 4096) return fail(std::string("\"") + key + "\" must be a non-empty string");
    o.selector = ProcessSelector::of(kind, -1, std::move(pattern));
    ++given;
  }
  if (given > 1) return fail("give at most one of \"pid\", \"exe\", \"library\"");
  return o;
}

}  // namespace

Expected<void> ServiceManager::register_commands(control::CommandRegistry& registry) {
  GEARS_TRY(registry.add(
      "deploy",
      "deploy a service bundle into the running guest: \"bundle\":\"/abs/path.gears\", optional "
      "\"pid\":N | \"exe\":GLOB | \"library\":NAME (running processes; default the manifest's programs), \"timeout_ms\"",
      [this](const Json& req) -> Expected<Json> {
        const std::string path = req.at("bundle").get<std::string>();
        auto options = deploy_options(req);
        if (!options) return fail(options.error());
        auto st = deploy_file(path, *options);
        if (!st) return fail(st.error());
        return Json{{"service", std::move(*st)}};
      }));
  GEARS_TRY(registry.add("undeploy", "remove a deployed service from the guest and gears-vmm: \"service\":NAME",
                         [this](const Json& req) -> Expected<Json> {
                           const std::string name = req.at("service").get<std::string>();
                           auto t = timeout_of(req);
                           if (!t) return fail(t.error());
                           auto r = undeploy(name, *t);
                           if (!r) return fail(r.error());
                           return Json{{"service", name}, {"errors", r->errors}, {"undeploy_ms", r->undeploy_ms}};
                         }));
  GEARS_TRY(registry.add("services", "deployed services: halves, injected processes, hypercall counts, last log lines",
                         [this](const Json&) -> Expected<Json> { return services(); }));
  // `gearsctl stats`: each loaded service's own counters (ServiceHost::add_counters).
  GEARS_TRY(registry.add_stats("services", [this] { return counters(); }));
  return {};
}

}  // namespace gears::vmm::deploy
