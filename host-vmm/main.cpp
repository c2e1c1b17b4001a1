// gears-vmm: boot a Linux guest on KVM. Everything but argument handling and the process's
// signals lives in gears_vmm_core (builder.cpp composes the machine).
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "builder.h"
#include "config/vm_config.h"
#include "hooks/options.h"
#include "hooks/toolset.h"
#include "x86/bzimage.h"
#include "x86/cpuid.h"

namespace {

// SIGINT/SIGTERM end the run cleanly (vCPUs joined, tty restored): they are blocked in every
// thread and taken by one waiter thread.
void watch_signals(gears::vmm::RunControl& control, const sigset_t& set) {
  std::thread([&control, set] {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) control.request_stop(gears::vmm::StopReason::HostRequest, strsignal(sig));
  }).detach();
}

// The control socket's "net" section: every NIC's device counters and every switch's counters.
gears::vmm::control::Json net_stats(const gears::vmm::Machine& m) {
  using gears::vmm::control::Json;
  Json nics = Json::array(), switches = Json::array();
  for (const auto& n : m.nics()) {
    const auto s = n.device->stats();
    Json nic{{"name", n.name}, {"mac", gears::vmm::net::to_string(n.mac)}, {"overlay", n.overlay}, {"mtu", n.mtu}};
    for (const auto& [name, value] : s.named()) nic[std::string(name)] = value;
    nics.push_back(std::move(nic));
  }
  for (const auto& sw : m.switches()) {
    Json counters = Json::object(), peers = Json::array();
    for (const auto& [name, value] : sw.sw->stats()) counters[std::string(name)] = value;
    for (const auto& p : sw.sw->peers()) peers.push_back(gears::vmm::net::to_string(p));
    Json j{{"overlay", sw.overlay}, {"peers", std::move(peers)}, {"counters", std::move(counters)}};
    if (const auto* b = sw.sw->backend()) j["listen"] = gears::vmm::net::to_string(b->local());
    switches.push_back(std::move(j));
  }
  return Json{{"nics", std::move(nics)}, {"switches", std::move(switches)}};
}

// The control socket's "disks" section: per disk, its scheduler's counters and per issuer its
// requests; an issuer is a tracked process (named: id, pid, exe, state) or, untracked, an
// address-space root.
gears::vmm::control::Json disk_stats(const gears::vmm::Machine& m, gears::vmm::hooks::Toolset& tools) {
  using gears::vmm::control::Json;
  namespace disk = gears::vmm::disk;
  Json disks = Json::array();
  for (const auto& d : m.disks()) {
    const auto s = d.device->stats();
    Json issuers = Json::array();
    for (const auto& i : s.issuers) {
      Json j{{"cr3", i.address_space}, {"reads", i.reads}, {"writes", i.writes}, {"sectors", i.sectors},
             {"wait_ns", i.wait_ns}, {"service_ns", i.service_ns}};
      if (i.issuer == ~uint64_t{0}) j["others"] = true;  // past the per-disk limit of issuers
      if ((i.issuer & disk::kIssuerIsProcess) && i.issuer != ~uint64_t{0} && tools.tracking()) {
        const uint64_t id = i.issuer & ~disk::kIssuerIsProcess;
        j["process"] = id;
        if (auto p = tools.tracker().with([&](auto& t) { return t.by_id(id); })) {
          j["pid"] = p->pid;
          j["exe"] = p->exe;
          j["state"] = gears::vmm::proctrack::to_string(p->state);
        }
      }
      issuers.push_back(std::move(j));
    }
    disks.push_back(Json{{"path", d.path}, {"scheduler", s.scheduler}, {"model", s.model},
                         {"requests", s.requests}, {"errors", s.errors}, {"pending", s.pending},
                         {"anticipated", s.sched.anticipated}, {"anticipation_hits", s.sched.hits},
                         {"anticipation_expired", s.sched.expired}, {"issuers", std::move(issuers)}});
  }
  return disks;
}

// The control socket's "exits" section: VM exits by kind, per vCPU and in total (what a
// guest-side service saves shows here; doc/vmm.md).
gears::vmm::control::Json exit_stats(gears::vmm::Machine& m) {
  using gears::vmm::control::Json;
  gears::vmm::ExitCounts sum;
  Json per = Json::array();
  auto json = [](const gears::vmm::ExitCounts& c) {
    return Json{{"total", c.total}, {"io", c.io},       {"hypercall", c.hypercall}, {"mmio", c.mmio},
                {"msr", c.msr},     {"intr", c.intr},   {"debug", c.debug},         {"other", c.other}};
  };
  for (const auto& v : m.vcpus()) {
    const auto c = v->exit_counts();
    per.push_back(json(c));
    sum.total += c.total, sum.io += c.io, sum.hypercall += c.hypercall, sum.mmio += c.mmio;
    sum.msr += c.msr, sum.intr += c.intr, sum.debug += c.debug, sum.other += c.other;
    sum.counting = c.counting;
  }
  Json out = json(sum);
  out["vcpus"] = std::move(per);
  out["counting"] = sum.counting;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gears::vmm;
  // The GEARS tools' options first (hooks/options.h); the rest are the VM's.
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  auto gears = hooks::take_gears_options(args);
  if (!gears) {
    std::fprintf(stderr, "gears-vmm: %s\n", gears.error().what().c_str());
    return 1;
  }
  std::vector<const char*> vm_argv{argc > 0 ? argv[0] : "gears-vmm"};
  for (const auto& a : args) vm_argv.push_back(a.c_str());
  auto cfg = config::parse_args(static_cast<int>(vm_argv.size()), vm_argv.data());
  if (!cfg) {
    std::fprintf(stderr, "gears-vmm: %s\n", cfg.error().what().c_str());
    return 1;
  }
  if (cfg->help) {
    std::fputs(config::usage().c_str(), stdout);
    std::fputs(hooks::gears_usage(), stdout);
    return 0;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto machine = Machine::build(*cfg);
  if (!machine) {
    std::fprintf(stderr, "gears-vmm: %s\n", machine.error().what().c_str());
    return 1;
  }
  // The guest kernel's release (its bzImage version string): deploy checks kernel halves
  // against it. Unknown: bundles with a kernel half are refused.
  std::string release;
  if (auto k = x86::read_file(cfg->kernel, "kernel"))
    if (auto r = x86::kernel_release(*k)) release = *r;
  auto tools = hooks::Toolset::attach(**machine, *gears, config::kernel_cmdline(*cfg), x86::host_cpu_is_amd(), release);
  if (!tools) {
    std::fprintf(stderr, "gears-vmm: %s\n", tools.error().what().c_str());
    return 1;
  }
  if (auto r = (*tools)->registry().add_stats("exits", [m = machine->get()] { return exit_stats(*m); }); !r) {
    std::fprintf(stderr, "gears-vmm: %s\n", r.error().what().c_str());
    return 1;
  }
  if (!(*machine)->nics().empty()) {
    auto r = (*tools)->registry().add_stats("net", [m = machine->get()] { return net_stats(*m); });
    if (!r) {
      std::fprintf(stderr, "gears-vmm: %s\n", r.error().what().c_str());
      return 1;
    }
  }
  if (!(*machine)->disks().empty()) {
    // Disk requests are attributed to (and anticipated for) inferred processes, not roots,
    // where processes are tracked: a root is reused once its process is gone.
    // A process that ends is no longer anticipated.
    if ((*tools)->tracking()) {
      (*machine)->set_process_resolver([t = tools->get()](uint64_t root) {
        return t->tracker().with([&](auto& tr) { return tr.id_of(root); });
      });
      (*tools)->tracker().with([m = machine->get()](auto& tr) {
        tr.set_on_end([m](uint64_t id) {
          for (const auto& d : m->disks()) d.device->forget(gears::vmm::disk::kIssuerIsProcess | id);
        });
      });
    }
    auto r = (*tools)->registry().add_stats("disks", [m = machine->get(), t = tools->get()] { return disk_stats(*m, *t); });
    if (!r) {
      std::fprintf(stderr, "gears-vmm: %s\n", r.error().what().c_str());
      return 1;
    }
  }
  watch_signals((*machine)->control(), set);
  StopReason r = (*machine)->run();
  tools->reset();  // the control thread stops before guest RAM goes away
  std::string detail = (*machine)->control().detail();
  machine->reset();  // restores the terminal before the last line
  if (detail.empty()) std::fprintf(stderr, "gears-vmm: %s\n", describe(r));
  else std::fprintf(stderr, "gears-vmm: %s: %s\n", describe(r), detail.c_str());
  return exit_code(r);
}
