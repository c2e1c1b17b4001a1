#include "tools/proctrack/commands.h"

namespace gears::vmm::proctrack {

using control::Json;

Json to_json(const ProcessInfo& p, bool with_counts) {
  Json j = {{"id", p.id},           {"cr3", p.cr3},
            {"pid", p.pid},         {"ppid", p.ppid},
            {"parent_id", p.parent_id}, {"exe", p.exe},
            {"state", to_string(p.state)}, {"created_ns", p.created_ns},
            {"exited_ns", p.exited_ns}, {"execs", p.execs},
            {"syscalls", p.syscalls}, {"threads", p.threads},
            {"shared_address_space", p.shared_address_space}};
  if (with_counts) {
    Json counts = Json::object();
    for (const auto& [nr, n] : p.syscall_counts) counts[std::to_string(nr)] = n;
    j["syscall_counts"] = std::move(counts);
  }
  return j;
}

Json to_json(const TrackerCounters& c) {
  return {{"created", c.created}, {"execs", c.execs}, {"exec_moved", c.exec_moved},     {"exited", c.exited},
          {"vanished", c.vanished}, {"dropped", c.dropped}, {"events", c.events},
          {"shared_address_space", c.shared_address_space}, {"unseen", c.unseen}};
}

namespace {
Json counters_json(const ProcessTracker& t) {
  Json c = to_json(t.counters());
  c["awaiting_child"] = t.awaiting_children();  // a gauge, not a count: forks not yet paired
  return c;
}
}  // namespace

Expected<void> register_commands(control::CommandRegistry& registry, SharedTracker& tracker,
                                 std::function<void(ProcessTracker&)> refresh) {
  GEARS_TRY(registry.add("processes", "guest processes inferred from address spaces (\"all\":true adds ended ones)",
                         [&tracker, refresh](const Json& req) -> Expected<Json> {
                           const bool all = req.value("all", false);
                           return tracker.with([&](ProcessTracker& t) {
                             if (refresh) refresh(t);
                             Json list = Json::array();
                             if (all)
                               for (const auto& p : t.history()) list.push_back(to_json(p));
                             for (const auto& p : t.live()) list.push_back(to_json(p));
                             return Json{{"processes", std::move(list)}, {"counters", counters_json(t)}};
                           });
                         }));
  GEARS_TRY(registry.add("process", "one process with its per-syscall counts: \"pid\":N or \"cr3\":N",
                         [&tracker, refresh](const Json& req) -> Expected<Json> {
                           return tracker.with([&](ProcessTracker& t) -> Expected<Json> {
                             if (refresh) refresh(t);
                             std::optional<ProcessInfo> p;
                             if (req.contains("pid")) p = t.by_pid(req.at("pid").get<int64_t>());
                             else if (req.contains("cr3")) p = t.by_cr3(req.at("cr3").get<uint64_t>());
                             else return fail("process wants \"pid\" or \"cr3\"");
                             if (!p) return fail("no such live process");
                             return Json{{"process", to_json(*p, true)}};
                           });
                         }));
  GEARS_TRY(registry.add_stats("proctrack", [&tracker, refresh] {
    return tracker.with([&](ProcessTracker& t) {
      if (refresh) refresh(t);
      return counters_json(t);
    });
  }));
  return {};
}

}  // namespace gears::vmm::proctrack
