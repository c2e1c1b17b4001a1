#include "gearsctl/format.h"

#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

namespace gears::ctl {

using vmm::control::Json;

namespace {

struct Column {
  std::string header;
  std::string key;
  bool hex = false;
};

std::string cell(const Json& v, bool hex) {
  if (v.is_null()) return "-";
  if (v.is_boolean()) return v.get<bool>() ? "yes" : "no";
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) {
    if (v.is_number_unsigned()) {
      auto u = v.get<uint64_t>();
      if (!hex) return std::to_string(u);
      char b[24];
      std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(u));
      return b;
    }
    auto i = v.get<int64_t>();
    return i < 0 ? "-" : std::to_string(i);  // -1 = unknown (pid, ppid)
  }
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// Printable: control characters from guest strings become '?'.
std::string clean(std::string s) {
  for (char& c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  return s;
}

std::string table(const Json& rows, const std::vector<Column>& cols) {
  std::vector<std::vector<std::string>> cells;
  std::vector<size_t> width;
  for (const auto& c : cols) width.push_back(c.header.size());
  for (const auto& row : rows) {
    std::vector<std::string> line;
    for (size_t i = 0; i < cols.size(); ++i) {
      auto it = row.is_object() ? row.find(cols[i].key) : row.end();
      line.push_back(clean(it == row.end() ? "-" : cell(*it, cols[i].hex)));
      width[i] = std::max(width[i], line.back().size());
    }
    cells.push_back(std::move(line));
  }
  std::string out;
  auto emit = [&](const std::vector<std::string>& line) {
    std::string l;
    for (size_t i = 0; i < line.size(); ++i) {
      l += line[i];
      if (i + 1 < line.size()) l += std::string(width[i] - line[i].size() + 2, ' ');
    }
    out += l + "\n";
  };
  std::vector<std::string> headers;
  for (const auto& c : cols) headers.push_back(c.header);
  emit(headers);
  for (const auto& line : cells) emit(line);
  return out;
}

std::vector<Column> columns_of(const Json& rows) {
  std::set<std::string> keys;
  for (const auto& r : rows)
    if (r.is_object())
      for (const auto& [k, v] : r.items()) keys.insert(k);
  std::vector<Column> cols;
  for (const auto& k : keys) {
    std::string h = k;
    std::transform(h.begin(), h.end(), h.begin(), [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    cols.push_back({h, k, k == "cr3" || k == "gpa" || k == "gva"});
  }
  return cols;
}

void key_values(const Json& obj, const std::string& prefix, std::string& out) {
  for (const auto& [k, v] : obj.items()) {
    if (prefix.empty() && k == "ok") continue;
    if (v.is_object()) {
      key_values(v, prefix + k + ".", out);
    } else if (v.is_array() && !v.empty() && v[0].is_object()) {
      out += prefix + k + ":\n" + table(v, columns_of(v));
    } else {
      out += clean(prefix + k) + ": " + clean(cell(v, k == "cr3")) + "\n";
    }
  }
}

std::string str(const Json& obj, const char* key) {
  auto it = obj.is_object() ? obj.find(key) : obj.end();
  return it != obj.end() && it->is_string() ? clean(it->get<std::string>()) : std::string("-");
}

// Deployed services (deploy, services): one summary row each, then processes and log lines.
std::string services_text(const Json& list) {
  Json rows = Json::array();
  std::string details;
  for (const auto& s : list) {
    if (!s.is_object()) continue;
    const Json empty = Json::object();
    const Json& vmm = s.contains("vmm") ? s["vmm"] : empty;
    const Json& kernel = s.contains("kernel") ? s["kernel"] : empty;
    const Json& user = s.contains("user") ? s["user"] : empty;
    const std::string name = str(s, "service");
    std::string procs = "-";
    if (user.contains("processes") && user["processes"].is_array()) {
      procs = cell(user.value("injected", Json(0)), false) + "/" + std::to_string(user["processes"].size());
      if (!user["processes"].empty()) {
        details += name + ": running processes\n" +
                   table(user["processes"], {{"PID", "pid"}, {"EXE", "exe"}, {"OK", "ok"}, {"LATENCY_MS", "latency_ms"},
                                             {"ERROR", "error"}});
      }
    }
    if (user.contains("exec_env") && user["exec_env"].is_array() && !user["exec_env"].empty()) {
      std::string globs;
      for (const auto& g : user["exec_env"]) globs += (globs.empty() ? "" : ", ") + clean(cell(g, false));
      details += name + ": LD_PRELOAD " + str(user, "path") + " for new processes matching " + globs + "\n";
    }
    if (s.contains("log") && s["log"].is_array() && !s["log"].empty()) {
      details += name + ": last log lines\n";
      for (const auto& line : s["log"]) details += "  " + clean(cell(line, false)) + "\n";
    }
    rows.push_back({{"service", name},
                    {"version", str(s, "version")},
                    {"id", s.contains("id") ? s["id"] : Json()},
                    {"vmm", str(vmm, "state")},
                    {"kernel", str(kernel, "state")},
                    {"user", str(user, "state")},
                    {"processes", procs},
                    {"calls", vmm.contains("calls") ? vmm["calls"] : Json()}});
  }
  if (rows.empty()) return "no services deployed\n";
  return table(rows, {{"SERVICE", "service"},
                      {"VERSION", "version"},
                      {"ID", "id", true},
                      {"VMM", "vmm"},
                      {"KERNEL", "kernel"},
                      {"USER", "user"},
                      {"PROCESSES", "processes"},
                      {"HYPERCALLS", "calls"}}) +
         details;
}

}  // namespace

std::string format_reply(const std::string& cmd, const Json& reply) {
  if (cmd == "processes" && reply.contains("processes") && reply["processes"].is_array()) {
    std::string out = table(reply["processes"], {{"ID", "id"},
                                                 {"PID", "pid"},
                                                 {"PPID", "ppid"},
                                                 {"CR3", "cr3", true},
                                                 {"STATE", "state"},
                                                 {"THREADS", "threads"},
                                                 {"EXECS", "execs"},
                                                 {"SYSCALLS", "syscalls"},
                                                 {"EXE", "exe"}});
    if (reply.contains("counters") && reply["counters"].is_object()) {
      std::string c;
      for (const auto& [k, v] : reply["counters"].items()) c += (c.empty() ? "" : ", ") + k + " " + cell(v, false);
      out += "(" + c + ")\n";
    }
    return out;
  }
  if (cmd == "syscalls" && reply.contains("syscalls") && reply["syscalls"].is_array()) {
    std::string out;
    Json rest = reply;
    rest.erase("syscalls");
    key_values(rest, "", out);
    return out + table(reply["syscalls"], {{"NR", "nr"}, {"INTERCEPT", "intercept"}, {"USER", "user"}, {"TOOLS", "tools"}, {"EXITS", "exits"}});
  }
  if (cmd == "services" && reply.contains("services") && reply["services"].is_array())
    return services_text(reply["services"]);
  if (cmd == "deploy" && reply.contains("service") && reply["service"].is_object())
    return "deployed " + str(reply["service"], "service") + " " + str(reply["service"], "version") + "\n" +
           services_text(Json::array({reply["service"]}));
  if (cmd == "undeploy" && reply.contains("service")) {
    std::string out = "undeployed " + str(reply, "service") + "\n";
    if (reply.contains("errors") && reply["errors"].is_array())
      for (const auto& e : reply["errors"]) out += "warning: " + clean(cell(e, false)) + "\n";
    return out;
  }
  if (cmd == "help" && reply.contains("commands") && reply["commands"].is_array()) {
    return table(reply["commands"], {{"COMMAND", "name"}, {"DESCRIPTION", "help"}});
  }
  std::string out;
  key_values(reply, "", out);
  return out.empty() ? "ok\n" : out;
}

}  // namespace gears::ctl
