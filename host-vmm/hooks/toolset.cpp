#include "hooks/toolset.h"

#include <cstdio>
#include <ctime>
#include <cstdlib>

#include "control/socket_path.h"
#include "hooks/builtin_hypercalls.h"
#include "net/overlay_nic.h"
#include "tools/execve/exec_commands.h"
#include "tools/execve/exec_inject.h"
#include "tools/introspect/address_space.h"
#include "tools/proctrack/linux_syscalls.h"

namespace gears::vmm::hooks {

namespace sys = proctrack::linux_x86_64;
using control::Json;

namespace {
// What the tracker interprets (doc/toolset.md), plus arch_prctl: every new image (glibc's and
// musl's start code, ld.so) sets its thread pointer with it first, so an exec's new address
// space is seen even when it runs on another vCPU. Not brk: it exits on every call for the
// whole life of every process (malloc growth), the largest share of tracking's cost.
constexpr uint32_t kTrackedSyscalls[] = {sys::kClone, sys::kFork,     sys::kVfork,    sys::kExecve, sys::kExit,
                                         sys::kExitGroup, sys::kExecveat, sys::kClone3, 158};
// Whose returns the tracker reads: fork-likes (the child's pid, the child's own first return),
// execs (failure), and getpid/getppid where someone else selected them.
constexpr uint32_t kTrackedReturns[] = {sys::kClone,    sys::kFork,   sys::kVfork,  sys::kExecve,
                                        sys::kExecveat, sys::kClone3, sys::kGetpid, sys::kGetppid};
// The --shm region `name` of this VM, or an error naming the option that would add it.
Expected<const SharedRegionInfo*> shared_region_named(Machine& machine, std::string_view name) {
  for (const SharedRegionInfo& r : machine.shared_regions())
    if (r.region->spec().name == name) return &r;
  return fail("this VM has no shared region " + std::string(name) + " (gears-vmm --shm name=" + std::string(name) +
              ",size=...)");
}

}  // namespace

Expected<std::unique_ptr<Toolset>> Toolset::attach(Machine& machine, const GearsOptions& options,
                                                   const std::string& guest_cmdline, bool cpu_is_amd,
                                                   const std::string& guest_release) {
  std::unique_ptr<Toolset> t(new Toolset());
  GEARS_TRY(t->setup(machine, options, guest_cmdline, cpu_is_amd, guest_release));
  return t;
}

Toolset::~Toolset() {
  if (server_) server_->stop();
}

const std::string& Toolset::socket_path() const { return socket_path_; }

Expected<void> Toolset::setup(Machine& machine, const GearsOptions& o, const std::string& guest_cmdline,
                              bool cpu_is_amd, const std::string& guest_release) {
  GEARS_TRY(sysexit_.register_commands(registry_));
  mem_ = &machine.memory();
  GEARS_TRY(proctrack::register_commands(registry_, tracker_, [this](proctrack::ProcessTracker& t) {
    timespec ts{};
    clock_gettime(CLOCK_MONOTONIC, &ts);  // the syscall events' clock
    reap(t, static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<uint64_t>(ts.tv_nsec), true);
  }));
  GEARS_TRY(hypercalls_.register_commands(registry_));
  GEARS_TRY(register_builtin_hypercalls(hypercalls_));
  for (uint32_t nr : o.intercept) GEARS_TRY(sysexit_.set_user(nr, true));
  for (uint32_t nr : o.returns) {
    GEARS_TRY(sysexit_.set_user(nr, true));
    GEARS_TRY(sysexit_.set_user_returns(nr, true));
  }
  track_ = o.track_processes;
  if (track_) {
    for (uint32_t nr : kTrackedSyscalls) GEARS_TRY(sysexit_.acquire(nr));
    for (uint32_t nr : kTrackedReturns) GEARS_TRY(sysexit_.acquire_returns(nr));
  }
  for (const auto& r : o.inject_env)
    if (auto id = exec_rules_.add(r, execve::kFromOption); !id) return fail("--inject-env: " + id.error().message);
  for (const auto& r : o.inject_argv)
    if (auto id = exec_rules_.add(r, execve::kFromOption); !id) return fail("--inject-argv: " + id.error().message);
  for (size_t i = 0; i < machine.vcpus().size(); ++i) traces_.push_back(std::make_unique<VcpuTrace>());
  GEARS_TRY(registry_.add("events", "the last syscall events per vCPU with arguments: optional \"nr\":N, \"vcpu\":N",
                          [this](const Json& req) -> Expected<Json> {
                            const int64_t nr = req.contains("nr") ? req.at("nr").get<int64_t>() : -1;
                            const int64_t only = req.contains("vcpu") ? req.at("vcpu").get<int64_t>() : -1;
                            Json events = Json::array(), per_vcpu = Json::array();
                            for (size_t v = 0; v < traces_.size(); ++v) {
                              std::lock_guard lock(traces_[v]->mu);
                              per_vcpu.push_back(traces_[v]->count);
                              if (only >= 0 && static_cast<size_t>(only) != v) continue;
                              for (const auto& ev : traces_[v]->last) {
                                if (nr >= 0 && ev.nr != static_cast<uint64_t>(nr)) continue;
                                events.push_back({{"vcpu", ev.vcpu}, {"nr", ev.nr}, {"cr3", ev.cr3},
                                                  {"args", ev.args}, {"user_rip", ev.user_rip}, {"time_ns", ev.time_ns}});
                              }
                            }
                            return Json{{"events", std::move(events)}, {"per_vcpu", std::move(per_vcpu)}};
                          }));
  GEARS_TRY(registry_.add("returns",
                          "the last syscall returns per vCPU: optional \"nr\":N, \"vcpu\":N (where it returned)",
                          [this](const Json& req) -> Expected<Json> {
                            const int64_t nr = req.contains("nr") ? req.at("nr").get<int64_t>() : -1;
                            const int64_t only = req.contains("vcpu") ? req.at("vcpu").get<int64_t>() : -1;
                            Json list = Json::array(), per_vcpu = Json::array();
                            for (size_t v = 0; v < traces_.size(); ++v) {
                              std::lock_guard lock(traces_[v]->mu);
                              per_vcpu.push_back(traces_[v]->return_count);
                              if (only >= 0 && static_cast<size_t>(only) != v) continue;
                              for (const auto& r : traces_[v]->returns) {
                                if (nr >= 0 && r.nr != static_cast<uint64_t>(nr)) continue;
                                list.push_back({{"vcpu", r.vcpu}, {"entry_vcpu", r.entry_vcpu}, {"nr", r.nr},
                                                {"cr3", r.cr3}, {"args", r.args}, {"ret", r.ret},
                                                {"child", r.child}, {"user_rip", r.user_rip},
                                                {"entry_time_ns", r.entry_time_ns}, {"time_ns", r.time_ns}});
                              }
                            }
                            return Json{{"returns", std::move(list)}, {"per_vcpu", std::move(per_vcpu)}};
                          }));
  sysexit_.subscribe_returns([this](const syscall_exit::SyscallReturn& r) { on_return(r); });
  GuestMemory& mem = machine.memory();
  sysexit_.subscribe([this, &mem](const syscall_exit::SyscallEvent& ev, VcpuRegs& regs) { on_syscall(mem, ev, regs); });

  SyscallHookConfig hc;
  hc.syscall_exit = o.stub_ready;
  hc.armed_at_boot = o.syscall_exit;
  hc.returns = o.syscall_returns;
  hc.guest_cmdline = guest_cmdline;
  hc.cpu_is_amd = cpu_is_amd;
  auto hook = SyscallHook::install(machine.vm(), machine.vcpus(), sysexit_, hypercalls_, hc);
  if (!hook) return fail(hook.error());
  hook_ = std::move(*hook);
  SyscallHook* h = hook_.get();
  GEARS_TRY(registry_.add_stats("syscall_hook", [h] { return h->stats(); }));
  GEARS_TRY(registry_.add_stats("syscall_returns", [h] {
    return h->returns() ? h->returns()->stats() : Json{{"status", "off"}};
  }));
  GEARS_TRY(registry_.add("syscall-hook", "arm/disarm the syscall stub on every vCPU (LSTAR): \"on\":bool",
                          [h](const Json& req) -> Expected<Json> { return h->set_armed(req.at("on").get<bool>()); }));
  GEARS_TRY(registry_.add_stats("execve", [this] {
    return Json{{"execs_seen", execs_seen_.load()},     {"injected", injected_.load()},
                {"inject_failed", inject_failed_.load()}, {"env_rewritten", env_rewritten_.load()},
                {"argv_rewritten", argv_rewritten_.load()}, {"rules", exec_rules_.size()},
                {"tracking", track_}};
  }));
  GEARS_TRY(execve::register_commands(registry_, exec_rules_));

  GEARS_TRY(setup_injection());
  subscriptions_.set_process_events(track_);
  deploy::ManagerConfig mc;
  mc.injector = injector_.get();
  mc.dispatcher = &hypercalls_;
  mc.subscriptions = &subscriptions_;
  mc.guest_release = guest_release;
  mc.resources.shared_regions = [&machine](std::string_view name) -> Expected<std::span<uint8_t>> {
    auto r = shared_region_named(machine, name);
    if (!r) return Unexpected<Error>{r.error()};
    return (*r)->region->span(0, (*r)->region->size());
  };
  mc.resources.vm_groups = [&machine](std::string_view name) -> Expected<VmGroup*> {
    auto r = shared_region_named(machine, name);
    if (!r) return Unexpected<Error>{r.error()};
    if (!(*r)->group) return fail("this VM has no place in region " + std::string(name) + "'s VM group (it was full)");
    return static_cast<VmGroup*>((*r)->group.get());
  };
  mc.resources.guest_physical = [&machine](uint64_t gpa, uint64_t len) { return machine.memory().span(gpa, len); };
  mc.resources.overlay_nics = [&machine](size_t index) -> Expected<std::unique_ptr<OverlayNic>> {
    if (index >= machine.nics().size())
      return fail("this VM has no NIC " + std::to_string(index) + " (it has " + std::to_string(machine.nics().size()) +
                  "; gears-vmm --net mac=...)");
    const NicInfo& n = machine.nics()[index];
    return std::unique_ptr<OverlayNic>(std::make_unique<net::SwitchNicView>(n.sw, n.port, n.name, n.mac));
  };
  services_ = std::make_unique<deploy::ServiceManager>(std::move(mc));
  GEARS_TRY(services_->register_commands(registry_));

  const bool explicit_socket = o.control_socket.has_value();
  const std::string path = explicit_socket ? *o.control_socket : control::default_socket_path();
  if (path != "none") {
    auto server = control::ControlServer::start(path, registry_);
    if (!server) {
      if (explicit_socket) return fail("--control-socket: " + server.error().what());
      std::fprintf(stderr, "gears-vmm: no control socket: %s\n", server.error().what().c_str());
    } else {
      server_ = std::move(*server);
      socket_path_ = path;
      std::fprintf(stderr, "gears-vmm: control socket %s\n", path.c_str());
    }
  }
  return {};
}

Expected<void> Toolset::setup_injection() {
  SyscallHook* h = hook_.get();
  engine_ = std::make_unique<inject::BorrowEngine>([h](bool on) { h->set_exit_all(on); });
  h->set_engine(engine_.get());
  inject::InjectorHooks ih;
  ih.ensure_ready = [h]() -> Expected<void> {
    // Arms (and on first use maps) the stub; says why not (--no-syscall-exit, a PTI guest, a
    // guest still booting).
    if (!h->armed() || !h->stub_installed()) GEARS_TRY(h->set_armed(true));
    return {};
  };
  ih.exec_rules = &exec_rules_;
  injector_ = std::make_unique<inject::EngineInjector>(*engine_, std::move(ih));
  inject::BorrowEngine* e = engine_.get();
  GEARS_TRY(registry_.add_stats("inject", [e] {
    const auto s = e->stats();
    return Json{{"borrows", s.borrows}, {"completed", s.completed}, {"failed", s.failed}, {"lost", s.lost},
                {"requests", s.requests}, {"active", s.active}, {"pending_jobs", s.pending_jobs}};
  }));
  GEARS_TRY(registry_.add("guest-ps", "the guest's processes as its /proc shows them (read by a borrowed thread): "
                          "optional \"timeout_ms\"",
                          [this](const Json& req) -> Expected<Json> {
                            const auto ms = req.contains("timeout_ms") ? req.at("timeout_ms").get<int64_t>() : 10000;
                            auto procs = injector_->list_processes(std::chrono::milliseconds(ms));
                            if (!procs) return fail(procs.error());
                            Json list = Json::array();
                            for (const auto& p : *procs)
                              list.push_back({{"pid", p.pid}, {"exe", p.exe}, {"libs", p.libs},
                                              {"libc_base", introspect::hex(p.libc_base)}});
                            return Json{{"processes", std::move(list)}};
                          }));
  return {};
}

Expected<void> Toolset::select_execve(bool on) {
  if (!on) {
    sysexit_.release(sys::kExecve);
    sysexit_.release(sys::kExecveat);
    return {};
  }
  GEARS_TRY(sysexit_.acquire(sys::kExecve));
  if (auto r = sysexit_.acquire(sys::kExecveat); !r) {
    sysexit_.release(sys::kExecve);
    return fail(r.error());
  }
  return {};
}

void Toolset::record(const syscall_exit::SyscallEvent& ev) {
  if (ev.vcpu >= traces_.size()) return;
  VcpuTrace& t = *traces_[ev.vcpu];
  std::lock_guard lock(t.mu);
  ++t.count;
  t.last.push_back(ev);
  if (t.last.size() > kTraceDepth) t.last.pop_front();
}

void Toolset::on_return(const syscall_exit::SyscallReturn& r) {
  if (r.vcpu < traces_.size()) {
    VcpuTrace& t = *traces_[r.vcpu];
    std::lock_guard lock(t.mu);
    ++t.return_count;
    t.returns.push_back(r);
    if (t.returns.size() > kTraceDepth) t.returns.pop_front();
  }
  if (!track_) return;
  proctrack::SyscallExit e;
  e.vcpu = r.vcpu;
  e.cr3 = r.cr3;
  e.nr = r.nr;
  e.ret = r.ret;
  e.time_ns = r.time_ns;
  e.entry_time_ns = r.entry_time_ns;  // the same clock value the entry event carried
  tracker_.with([&](proctrack::ProcessTracker& t) {
    reap(t, e.time_ns, false);
    t.on_syscall_exit(e);
  });
}

void Toolset::on_syscall(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs) {
  record(ev);
  subscriptions_.on_syscall(mem, ev, regs);
  const bool is_exec = ev.nr == sys::kExecve || ev.nr == sys::kExecveat;
  if (is_exec) {
    execs_seen_.fetch_add(1, std::memory_order_relaxed);
    inject(mem, ev, regs);
  }
  if (!track_) return;
  proctrack::SyscallEntry e;
  e.vcpu = ev.vcpu;
  e.cr3 = ev.cr3;
  e.nr = ev.nr;
  e.args = ev.args;
  e.time_ns = ev.time_ns;
  if (is_exec || ev.nr == sys::kClone3) {
    introspect::AddressSpace as(mem, ev.cr3);
    if (is_exec) {
      // The filename as the caller passed it (user memory, user access, PATH_MAX bound).
      const uint64_t ptr = ev.nr == sys::kExecve ? ev.args[0] : ev.args[1];
      if (auto f = as.read_string(ptr, 4096, introspect::Access::user_read())) e.exec_filename = std::move(*f);
    } else if (auto flags = as.read_obj<uint64_t>(ev.args[0], introspect::Access::user_read())) {
      e.clone3_flags = *flags;  // struct clone_args starts with the flags
    }
  }
  int64_t pid = -1;
  tracker_.with([&](proctrack::ProcessTracker& t) {
    // First: a root reused by this event's process is then free. Always before a call that
    // makes an address space (fork, clone, exec): the new one may take a dead process's root
    // (a killed process makes no exit call), and must not be taken for that process.
    const bool makes_address_space = ev.nr == sys::kFork || ev.nr == sys::kVfork || ev.nr == sys::kClone ||
                                     ev.nr == sys::kClone3 || is_exec;
    reap(t, e.time_ns, makes_address_space);
    t.on_syscall_entry(e);
    if (auto p = t.by_cr3(ev.cr3)) pid = p->pid;
  });
  if (auto pe = deploy::process_event_of(ev, e.exec_filename, pid)) subscriptions_.on_process(mem, ev.vcpu, regs, *pe);
}

void Toolset::reap(proctrack::ProcessTracker& t, uint64_t now_ns, bool force) {
  if (!track_ || !mem_) return;
  if (!force && now_ns >= last_reap_ns_ && now_ns - last_reap_ns_ < kReapEveryNs) return;
  last_reap_ns_ = now_ns;
  t.reap([this](uint64_t root) { return introspect::user_half_empty(*mem_, root); }, now_ns);
}

void Toolset::inject(GuestMemory& mem, const syscall_exit::SyscallEvent& ev, VcpuRegs& regs) {
  if (exec_rules_.empty()) return;
  introspect::AddressSpace caller(mem, ev.cr3);
  const uint64_t ptr = ev.nr == sys::kExecve ? ev.args[0] : ev.args[1];
  auto file = caller.read_string(ptr, 4096, introspect::Access::user_read());
  if (!file) return;  // the kernel will answer -EFAULT itself
  const execve::ExecEdits edits = exec_rules_.edits_for(*file);
  if (edits.empty()) return;
  auto as = introspect::AddressSpace::of_vcpu(mem, regs);
  if (!as) {
    inject_failed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  auto r = execve::inject_exec(*as, regs, edits);
  if (!r) {
    inject_failed_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  injected_.fetch_add(1, std::memory_order_relaxed);
  if (r->env_rewritten) env_rewritten_.fetch_add(1, std::memory_order_relaxed);
  if (r->argv_rewritten) argv_rewritten_.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace gears::vmm::hooks
