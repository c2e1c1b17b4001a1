#include "deploy/service_manager.h"

#include <algorithm>
#include <cstdio>

#include "gears/bundle.h"

namespace gears::vmm::deploy {

using control::Json;
using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

namespace {

constexpr size_t kLogLinesShown = 10;
constexpr uint32_t kMaxPluginHypercalls = 0x10000;  // one service's whole number range

double ms_since(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

// Every guest step of one deploy shares the caller's timeout.
class Deadline {
 public:
  explicit Deadline(milliseconds budget) : end_(Clock::now() + budget) {}
  Expected<milliseconds> left(const char* step) const {
    const auto left = std::chrono::duration_cast<milliseconds>(end_ - Clock::now());
    if (left.count() <= 0) return fail(std::string("deploy timed out before ") + step);
    return left;
  }

 private:
  Clock::time_point end_;
};

std::string hex(uint32_t v) {
  char b[16];
  std::snprintf(b, sizeof b, "0x%x", v);
  return b;
}

Expected<void> check_descriptor(const PluginDescriptor& d, const ServiceBundle& b) {
  if (d.abi_version != kPluginAbiVersion)
    return fail("VMM half speaks plugin ABI " + std::to_string(d.abi_version) + ", this gears-vmm " +
                std::to_string(kPluginAbiVersion));
  if (!d.service_name || b.name != d.service_name)
    return fail("VMM half is service \"" + std::string(d.service_name ? d.service_name : "") + "\", the manifest says \"" +
                b.name + "\"");
  if (d.service_id != b.id)
    return fail("VMM half has service id " + std::to_string(d.service_id) + ", the manifest " + std::to_string(b.id));
  if (!d.service_version || b.version != d.service_version)
    return fail("VMM half is version \"" + std::string(d.service_version ? d.service_version : "") +
                "\", the manifest says \"" + b.version + "\"");
  if (d.hypercall_count > kMaxPluginHypercalls || (d.hypercall_count > 0 && !d.hypercalls))
    return fail("VMM half's hypercall table is invalid");
  for (uint32_t i = 0; i < d.hypercall_count; ++i)
    if (!d.hypercalls[i].handler) return fail("VMM half's hypercall " + hex(d.hypercalls[i].number) + " has no handler");
  return {};
}

Json injection_json(const ProcessInjection& p) {
  Json j{{"pid", p.pid}, {"exe", p.exe}, {"ok", p.ok}, {"latency_ms", p.latency_ms}};
  if (!p.ok) j["error"] = p.error;
  return j;
}

}  // namespace

ServiceManager::ServiceManager(ManagerConfig config) : config_(std::move(config)) {}

ServiceManager::~ServiceManager() {
  std::lock_guard lock(mu_);
  for (auto& [name, s] : services_)
    if (s->host) s->host->close();
}

Expected<Json> ServiceManager::deploy_file(const std::string& host_path, const DeployOptions& options) {
  if (host_path.empty() || host_path[0] != '/') return fail("bundle path must be absolute, got \"" + host_path + "\"");
  auto image = bundle::read_file(host_path);
  if (!image) return fail(image.error());
  auto r = deploy(*image, options);
  if (!r) return fail(host_path + ": " + r.error().what());
  return r;
}

Expected<Json> ServiceManager::deploy(std::span<const uint8_t> image, const DeployOptions& options) {
  if (!config_.dispatcher) return fail("deploy: no hypercall dispatcher");
  if (options.timeout.count() <= 0) return fail("deploy: the timeout must be positive");
  const auto started = Clock::now();
  // (a) Everything about the bundle, before the guest or this process is touched.
  auto checked = check_bundle(image, config_.guest_release);
  if (!checked) return fail(checked.error());
  if ((checked->kernel || checked->user) && !config_.injector)
    return fail("this gears-vmm cannot deploy into the guest (no injector), and service " + checked->name +
                " has guest halves");
  const std::string name = checked->name;
  {
    std::lock_guard lock(mu_);
    auto clash = [&](const std::string& other, uint16_t id) {
      return other == name || id == checked->id;
    };
    for (const auto& [n, s] : services_) {
      if (clash(n, s->bundle.id))
        return fail("service " + n + " (id " + std::to_string(s->bundle.id) + ") is already deployed");
      if (!checked->user_install.empty() && s->bundle.user_install == checked->user_install)
        return fail("service " + n + " already installs its user half at " + checked->user_install);
    }
    for (const auto& [n, id] : pending_)
      if (clash(n, id)) return fail("service " + n + " (id " + std::to_string(id) + ") is being deployed");
    pending_.emplace(name, checked->id);
  }
  auto service = std::make_unique<Service>();
  service->bundle = std::move(*checked);

  Expected<void> done = load_vmm_half(*service);
  if (done) done = load_guest_halves(*service, options);
  if (!done) {
    std::vector<std::string> errors;
    undo(*service, options.timeout, errors);
    std::string msg = "deploying " + name + ": " + done.error().what();
    if (!errors.empty()) {
      msg += " (rollback incomplete:";
      for (const auto& e : errors) msg += " " + e + ";";
      msg.back() = ')';
    }
    std::lock_guard lock(mu_);
    pending_.erase(name);
    return fail(msg);
  }
  service->deploy_ms = ms_since(started);
  std::lock_guard lock(mu_);
  pending_.erase(name);
  Json st = status(*service);
  services_.emplace(name, std::move(service));
  return st;
}

// (b) The VMM half: loaded, checked against the manifest, started, its hypercalls registered.
Expected<void> ServiceManager::load_vmm_half(Service& s) {
  if (!s.bundle.vmm) return {};
  auto lib = config_.open_plugin(s.bundle.vmm->data, s.bundle.name);
  if (!lib) return fail(lib.error());
  const PluginDescriptor& d = (*lib)->descriptor();
  GEARS_TRY(check_descriptor(d, s.bundle));
  auto host = std::make_shared<PluginServiceHost>(s.bundle.name, s.bundle.id, *config_.dispatcher, config_.subscriptions);
  host->set_resources(config_.resources);
  host->bind(*lib);
  s.host = host;  // from here on undo() closes it
  if (d.start) {
    int rc = 0;
    try {
      rc = d.start(*host);
    } catch (...) {
      return fail("the VMM half's start threw an exception");
    }
    if (rc != 0) return fail("the VMM half's start refused the service (returned " + std::to_string(rc) + ")");
  }
  for (uint32_t i = 0; i < d.hypercall_count; ++i) {
    const PluginHypercall& h = d.hypercalls[i];
    if (auto r = host->register_hypercall(h.number, h.handler); !r)
      return fail("VMM half's hypercall " + std::string(h.name ? h.name : "?") + ": " + r.error().what());
  }
  return {};
}

// A user half without patch points or an install path (a service of VMM and kernel halves):
// nothing in the guest would ever run it, so it is not written there.
static bool user_half_unused(const ServiceBundle& b) {
  for (const auto& e : b.user_exports)
    if (e != kUserAttachSymbol && e != kUserDetachSymbol) return false;
  return b.user_install.empty();
}

// (c) to (f): the guest halves, sharing one deadline.
Expected<void> ServiceManager::load_guest_halves(Service& s, const DeployOptions& options) {
  GuestInjector* inj = config_.injector;
  const Deadline deadline(options.timeout);
  if (s.bundle.kernel) {
    auto left = deadline.left("loading the kernel half");
    if (!left) return fail(left.error());
    const auto started = Clock::now();
    if (auto r = inj->load_module(s.bundle.kernel->data, "", *left); !r)
      return fail("loading kernel module " + s.bundle.module_name + ": " + r.error().what());
    s.module_loaded = true;
    s.module_ms = ms_since(started);
  }
  if (!s.bundle.user || (!options.selector && user_half_unused(s.bundle))) return {};

  // A plugin-style half goes where its program looks for plugins; the others to user_dir.
  const std::string path =
      s.bundle.user_install.empty() ? config_.user_dir + "/gears-" + s.bundle.name + ".user.so" : s.bundle.user_install;
  {
    auto left = deadline.left("writing the user half");
    if (!left) return fail(left.error());
    const auto started = Clock::now();
    if (auto r = inj->write_file(path, s.bundle.user->data, 0644, *left); !r)
      return fail("writing the user half to " + path + ": " + r.error().what());
    s.user_path = path;
    s.user_file_ms = ms_since(started);
  }

  std::vector<ProcessSelector> selectors;
  if (options.selector) {
    selectors.push_back(*options.selector);
  } else {
    for (const auto& prog : s.bundle.programs) selectors.push_back(ProcessSelector::of(ProcessSelector::Kind::exe_glob, -1, prog));
  }
  for (auto sel : selectors) {
    auto left = deadline.left("injecting the user half");
    if (!left) return fail(left.error());
    // A process two selectors match (a manifest naming "cat" and "*cat") gets the half once.
    for (const auto& p : s.processes) sel.exclude_pids.push_back(p.pid);
    auto r = inj->load_library(sel, path, kUserAttachSymbol, *left);
    if (!r) return fail("injecting the user half: " + r.error().what());
    for (auto& p : *r) s.processes.push_back(std::move(p));
  }

  // New processes: the manifest's programs, else the caller's exe glob.
  s.env_globs = s.bundle.programs;
  if (s.env_globs.empty() && options.selector && options.selector->kind == ProcessSelector::Kind::exe_glob)
    s.env_globs.push_back(options.selector->pattern);
  for (const auto& glob : s.env_globs) {
    auto id = inj->add_exec_env(glob, {"LD_PRELOAD", path, execve::EnvEdit::Mode::kPrepend});
    if (!id) return fail("preloading the user half into new \"" + glob + "\" processes: " + id.error().what());
    s.env_ids.push_back(*id);
  }
  return {};
}

// The reverse of whatever `s` says was done; errors are collected, nothing stops it.
void ServiceManager::undo(Service& s, milliseconds timeout, std::vector<std::string>& errors) {
  GuestInjector* inj = config_.injector;
  if (inj) {
    for (uint64_t id : s.env_ids) inj->remove_exec_env(id);
    s.env_ids.clear();
    std::vector<ProcessInjection> loaded;
    for (const auto& p : s.processes)
      if (p.ok) loaded.push_back(p);
    if (!loaded.empty()) {
      auto r = inj->unload_library(loaded, kUserDetachSymbol, timeout);
      if (!r) {
        errors.push_back("unloading the user half: " + r.error().what());
      } else {
        for (const auto& p : *r)
          if (!p.ok) errors.push_back("unloading the user half from pid " + std::to_string(p.pid) + ": " + p.error);
      }
    }
    s.processes.clear();
    if (!s.user_path.empty()) {
      if (auto r = inj->remove_file(s.user_path, timeout); !r)
        errors.push_back("removing " + s.user_path + ": " + r.error().what());
      s.user_path.clear();
    }
    if (s.module_loaded) {
      if (auto r = inj->unload_module(s.bundle.module_name, timeout); !r)
        errors.push_back("unloading kernel module " + s.bundle.module_name + ": " + r.error().what());
      s.module_loaded = false;
    }
  }
  if (s.host) {
    s.host->close();  // a handler still running keeps the plugin mapped until it returns
    s.host.reset();
  }
}

Expected<UndeployReport> ServiceManager::undeploy(const std::string& service, milliseconds timeout) {
  std::unique_ptr<Service> s;
  {
    std::lock_guard lock(mu_);
    auto it = services_.find(service);
    if (it == services_.end()) return fail("no service " + service + " is deployed");
    s = std::move(it->second);
    services_.erase(it);
  }
  const auto started = Clock::now();
  UndeployReport report;
  undo(*s, timeout, report.errors);
  report.undeploy_ms = ms_since(started);
  return report;
}

Json ServiceManager::counters() const {
  std::vector<std::pair<std::string, std::shared_ptr<PluginServiceHost>>> hosts;
  {
    std::lock_guard lock(mu_);
    for (const auto& [name, s] : services_)
      if (s->host) hosts.emplace_back(name, s->host);
  }
  Json out = Json::object();
  for (const auto& [name, host] : hosts) {
    Json c = Json::object();
    for (auto& [counter, value] : host->counters()) c[counter] = value;
    out[name] = std::move(c);
  }
  return out;
}

Json ServiceManager::status(const Service& s) const {
  const ServiceBundle& b = s.bundle;
  Json vmm{{"state", b.vmm ? (s.host ? "loaded" : "unloaded") : "absent"}};
  if (s.host) {
    Json numbers = Json::array();
    for (uint32_t n : s.host->hypercalls()) numbers.push_back(hex(n));
    vmm["hypercalls"] = std::move(numbers);
    vmm["calls"] = s.host->hypercall_calls();
    vmm["subscriptions"] = s.host->subscriptions();
    Json counters = Json::object();
    for (auto& [name, value] : s.host->counters()) counters[name] = value;
    vmm["counters"] = std::move(counters);
  }
  Json kernel{{"state", b.kernel ? (s.module_loaded ? "loaded" : "unloaded") : "absent"}};
  if (b.kernel) {
    kernel["module"] = b.module_name;
    kernel["vermagic"] = b.vermagic;
  }
  Json user{{"state", !b.user ? "absent" : !s.user_path.empty() ? "written" : user_half_unused(b) ? "unused" : "unloaded"}};
  if (b.user) {
    Json procs = Json::array();
    size_t ok = 0;
    for (const auto& p : s.processes) {
      procs.push_back(injection_json(p));
      ok += p.ok ? 1 : 0;
    }
    user["path"] = s.user_path;
    user["processes"] = std::move(procs);
    user["injected"] = ok;
    user["exec_env"] = s.env_globs;
  }
  Json log = Json::array();
  if (s.host)
    for (auto& line : s.host->logs().last(kLogLinesShown)) log.push_back(std::move(line));
  return Json{{"service", b.name}, {"version", b.version}, {"id", b.id},        {"vmm", std::move(vmm)},
              {"kernel", std::move(kernel)}, {"user", std::move(user)}, {"log", std::move(log)},
              {"deploy_ms", s.deploy_ms}, {"module_ms", s.module_ms}, {"user_file_ms", s.user_file_ms}};
}

Json ServiceManager::services() const {
  std::lock_guard lock(mu_);
  Json list = Json::array();
  for (const auto& [name, s] : services_) list.push_back(status(*s));
  return Json{{"services", std::move(list)}};
}

}  // namespace gears::vmm::deploy
