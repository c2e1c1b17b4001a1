#include "tools/inject/engine_injector.h"

#include <fnmatch.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <set>

namespace gears::vmm::inject {

namespace {

using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// A thread that does not enter a safe syscall within this long after the library job starts is
// nudged (SIGSTOP+SIGCONT): long enough for a process in a sleep loop to come by on its own.
constexpr milliseconds kNudgeAfter{800};

double ms_since(clock::time_point t) {
  return std::chrono::duration<double, std::milli>(clock::now() - t).count();
}

// One chain in one borrowed thread; the control thread waits for the result.
class OneShotJob : public Job {
 public:
  OneShotJob(std::function<Chain(ChainContext&, const Candidate&)> factory, std::function<bool(const Candidate&)> accept)
      : factory_(std::move(factory)), accept_(std::move(accept)) {}
  std::optional<Chain> offer(const Candidate& c, ChainContext& cx) override {
    if (taken_ || (accept_ && !accept_(c))) return std::nullopt;
    taken_ = true;
    return factory_(cx, c);
  }
  void finished(const Candidate&, const ChainResult& r) override {
    std::lock_guard lock(mu_);
    result_ = r;
    cv_.notify_all();
  }
  bool satisfied() const override { return taken_; }
  std::optional<ChainResult> wait(milliseconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return result_.has_value(); });
    return result_;
  }

 private:
  std::function<Chain(ChainContext&, const Candidate&)> factory_;
  std::function<bool(const Candidate&)> accept_;
  bool taken_ = false;  // under the engine's lock
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<ChainResult> result_;
};

// dlopen in every target process, each borrowed at one of its safe syscall entries.
class LibraryJob : public Job, public std::enable_shared_from_this<LibraryJob> {
 public:
  struct Target {
    GuestProcess proc;
    enum class State { waiting, running, done } state = State::waiting;
    deploy::ProcessInjection result;
    clock::time_point started;
  };
  LibraryJob(std::vector<GuestProcess> targets, std::string path, std::string attach)
      : path_(std::move(path)), attach_(std::move(attach)) {
    for (auto& p : targets) {
      Target t;
      t.result.pid = p.pid;
      t.result.exe = p.exe;
      t.proc = std::move(p);
      targets_.emplace(t.result.pid, std::move(t));
    }
  }

  std::optional<Chain> offer(const Candidate& c, ChainContext& cx) override {
    if (!is_safe_for_user_calls(c.nr)) return std::nullopt;
    std::lock_guard lock(mu_);
    if (not_target_.count(c.cr3) || in_flight_.count(c.cr3)) return std::nullopt;
    in_flight_.insert(c.cr3);
    auto out = std::make_shared<DlopenOutcome>();
    outcomes_[c.cr3] = out;
    const uint64_t cr3 = c.cr3;
    auto self = shared_from_this();
    ClaimFn claim = [self, cr3](int64_t pid) { return self->claim(cr3, pid); };
    return dlopen_chain(cx, std::move(claim), path_, attach_, out);
  }

  void finished(const Candidate& c, const ChainResult& r) override {
    std::lock_guard lock(mu_);
    in_flight_.erase(c.cr3);
    auto out = outcomes_[c.cr3];
    outcomes_.erase(c.cr3);
    if (!out || !out->wanted) {
      if (out && out->pid > 0) not_target_.insert(c.cr3);
      return;
    }
    auto it = targets_.find(out->pid);
    if (it == targets_.end()) return;
    Target& t = it->second;
    t.state = Target::State::done;
    t.result.cr3 = c.cr3;
    t.result.handle = out->handle;
    t.result.ok = r.has_value();
    if (!r) t.result.error = r.error().what();
    t.result.latency_ms = ms_since(t.started);
    cv_.notify_all();
  }

  bool satisfied() const override {
    std::lock_guard lock(mu_);
    return std::all_of(targets_.begin(), targets_.end(),
                       [](const auto& kv) { return kv.second.state != Target::State::waiting; });
  }

  bool all_done() const {
    return std::all_of(targets_.begin(), targets_.end(),
                       [](const auto& kv) { return kv.second.state == Target::State::done; });
  }
  bool wait_all(clock::time_point until) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, until, [&] { return all_done(); });
  }
  std::vector<int64_t> unfinished() const {
    std::lock_guard lock(mu_);
    std::vector<int64_t> w;
    for (const auto& [pid, t] : targets_)
      if (t.state != Target::State::done) w.push_back(pid);
    return w;
  }
  std::vector<int64_t> waiting() const {
    std::lock_guard lock(mu_);
    std::vector<int64_t> w;
    for (const auto& [pid, t] : targets_)
      if (t.state == Target::State::waiting) w.push_back(pid);
    return w;
  }
  // A waiting target that is gone from the guest's process list: it exited before it could be
  // borrowed.
  void gone(int64_t pid) {
    std::lock_guard lock(mu_);
    auto it = targets_.find(pid);
    if (it == targets_.end() || it->second.state == Target::State::done) return;
    it->second.result.error = it->second.state == Target::State::running
                                  ? "the process exited mid-injection"
                                  : "the process exited before it could be injected";
    it->second.state = Target::State::done;
    it->second.result.ok = false;
    cv_.notify_all();
  }
  std::vector<deploy::ProcessInjection> results() const {
    std::lock_guard lock(mu_);
    std::vector<deploy::ProcessInjection> out;
    for (const auto& [pid, t] : targets_) {
      auto r = t.result;
      if (t.state != Target::State::done) {
        r.ok = false;
        r.error = t.state == Target::State::running
                      ? "the process did not come back from the injected call in time (exited mid-injection?)"
                      : "the process entered no safe syscall in time (busy in user code, or blocked uninterruptibly)";
      }
      out.push_back(std::move(r));
    }
    return out;
  }

 private:
  std::optional<uint64_t> claim(uint64_t cr3, int64_t pid) {
    std::lock_guard lock(mu_);
    auto it = targets_.find(pid);
    if (it == targets_.end() || it->second.state != Target::State::waiting) return std::nullopt;
    it->second.state = Target::State::running;
    it->second.started = clock::now();
    it->second.result.cr3 = cr3;
    return it->second.proc.libc_base;
  }

  const std::string path_, attach_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<int64_t, Target> targets_;
  std::set<uint64_t> not_target_, in_flight_;
  std::map<uint64_t, std::shared_ptr<DlopenOutcome>> outcomes_;
};

}  // namespace

bool selector_matches(const deploy::ProcessSelector& sel, const GuestProcess& p) {
  if (std::find(sel.exclude_pids.begin(), sel.exclude_pids.end(), p.pid) != sel.exclude_pids.end()) return false;
  switch (sel.kind) {
    case deploy::ProcessSelector::Kind::pid:
      return p.pid == sel.pid;
    case deploy::ProcessSelector::Kind::exe_glob: {
      const auto slash = p.exe.rfind('/');
      const std::string base = slash == std::string::npos ? p.exe : p.exe.substr(slash + 1);
      return fnmatch(sel.pattern.c_str(), p.exe.c_str(), 0) == 0 || fnmatch(sel.pattern.c_str(), base.c_str(), 0) == 0;
    }
    case deploy::ProcessSelector::Kind::maps_library:
      return std::find(p.libs.begin(), p.libs.end(), sel.pattern) != p.libs.end();
  }
  return false;
}

Expected<int64_t> EngineInjector::run_one(Factory factory, milliseconds timeout, const char* what,
                                          std::function<bool(const Candidate&)> accept) {
  if (hooks_.ensure_ready) GEARS_TRY(hooks_.ensure_ready());
  auto job = std::make_shared<OneShotJob>(std::move(factory), std::move(accept));
  engine_.submit(job);
  auto r = job->wait(timeout);
  engine_.cancel(job, timeout);
  if (!r) {
    // A borrow still in progress is left to finish (the engine gives the thread back).
    return fail(std::string(what) + ": no guest thread completed it within " + std::to_string(timeout.count()) +
                " ms (is any guest process making system calls?)");
  }
  if (!*r) return fail(r->error());
  return **r;
}

Expected<void> EngineInjector::load_module(std::span<const uint8_t> image, const std::string& params,
                                           milliseconds timeout) {
  auto bytes = std::make_shared<const std::vector<uint8_t>>(image.begin(), image.end());
  GEARS_TRY(run_one([bytes, params](ChainContext& cx, const Candidate&) { return load_module_chain(cx, bytes, params); },
                    timeout, "loading the kernel module"));
  return {};
}

Expected<void> EngineInjector::unload_module(const std::string& name, milliseconds timeout) {
  GEARS_TRY(run_one([name](ChainContext& cx, const Candidate&) { return unload_module_chain(cx, name); }, timeout,
                    "unloading the kernel module"));
  return {};
}

Expected<void> EngineInjector::write_file(const std::string& path, std::span<const uint8_t> data, uint32_t mode,
                                          milliseconds timeout) {
  auto bytes = std::make_shared<const std::vector<uint8_t>>(data.begin(), data.end());
  GEARS_TRY(run_one([path, bytes, mode](ChainContext& cx, const Candidate&) { return write_file_chain(cx, path, bytes, mode); },
                    timeout, "writing the guest file"));
  return {};
}

Expected<void> EngineInjector::remove_file(const std::string& path, milliseconds timeout) {
  GEARS_TRY(run_one([path](ChainContext& cx, const Candidate&) { return remove_file_chain(cx, path); }, timeout,
                    "removing the guest file"));
  return {};
}

Expected<std::vector<GuestProcess>> EngineInjector::list_processes(milliseconds timeout) {
  auto out = std::make_shared<std::vector<GuestProcess>>();
  GEARS_TRY(run_one([out](ChainContext& cx, const Candidate&) { return list_processes_chain(cx, out); }, timeout,
                    "listing guest processes"));
  return *out;
}

void EngineInjector::kick(int64_t pid, milliseconds timeout) {
  // Retried when the borrowed thread happens to belong to the target itself.
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto r = run_one([pid](ChainContext& cx, const Candidate&) { return kick_chain(cx, pid); }, timeout, "nudging");
    if (r || r.error().what().find("target itself") == std::string::npos) return;
  }
}

Expected<std::vector<deploy::ProcessInjection>> EngineInjector::load_library(const deploy::ProcessSelector& selector,
                                                                             const std::string& path,
                                                                             const std::string& attach_symbol,
                                                                             milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  auto listed = list_processes(timeout);
  if (!listed) return fail(listed.error());
  std::vector<GuestProcess> procs = std::move(*listed);
  std::vector<GuestProcess> targets;
  std::vector<deploy::ProcessInjection> refused;
  for (auto& p : procs) {
    if (!selector_matches(selector, p)) continue;
    if (!p.libc_base) {
      deploy::ProcessInjection r;
      r.pid = p.pid;
      r.exe = p.exe;
      r.error = "no libc.so.6 mapped (statically linked?): no dynamic loader to load the library";
      refused.push_back(std::move(r));
      continue;
    }
    targets.push_back(std::move(p));
  }
  if (targets.empty()) return refused;
  auto job = std::make_shared<LibraryJob>(std::move(targets), path, attach_symbol);
  engine_.submit(job);
  const auto nudge_at = std::min(deadline, clock::now() + kNudgeAfter);
  if (!job->wait_all(nudge_at)) {
    for (int64_t pid : job->waiting()) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
      if (left.count() <= 0) break;
      kick(pid, std::min(left, milliseconds(2000)));
    }
    // Then wait, looking once a second for targets that left the process list meanwhile.
    while (!job->wait_all(std::min(deadline, clock::now() + std::chrono::seconds(1))) && clock::now() < deadline) {
      const auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
      auto now_listed = list_processes(std::min(left, milliseconds(2000)));
      if (!now_listed) continue;
      for (int64_t pid : job->unfinished()) {
        const bool alive = std::any_of(now_listed->begin(), now_listed->end(),
                                       [pid](const GuestProcess& p) { return p.pid == pid; });
        if (!alive) job->gone(pid);
      }
    }
  }
  engine_.cancel(job, timeout);
  auto results = job->results();
  results.insert(results.end(), refused.begin(), refused.end());
  return results;
}

Expected<std::vector<deploy::ProcessInjection>> EngineInjector::unload_library(
    const std::vector<deploy::ProcessInjection>& loaded, const std::string& detach_symbol, milliseconds timeout) {
  std::vector<deploy::ProcessInjection> results;
  const auto deadline = clock::now() + timeout;
  // The processes' libc bases as they are now: one /proc listing for all of them.
  auto procs = list_processes(timeout);
  for (const auto& l : loaded) {
    deploy::ProcessInjection r = l;
    r.ok = false;
    r.error.clear();
    if (!l.ok && !l.handle) {
      r.error = "was not loaded";
      results.push_back(std::move(r));
      continue;
    }
    auto left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    if (left.count() <= 0) {
      r.error = "timed out before this process";
      results.push_back(std::move(r));
      continue;
    }
    uint64_t libc = 0;
    if (procs)
      for (const auto& p : *procs)
        if (p.pid == l.pid) libc = p.libc_base;
    if (!libc) {
      r.error = procs ? "the process is gone" : "cannot list guest processes: " + procs.error().what();
      results.push_back(std::move(r));
      continue;
    }
    const uint64_t cr3 = l.cr3, handle = l.handle;
    const auto start = clock::now();
    auto accept = [cr3](const Candidate& c) { return c.cr3 == cr3 && is_safe_for_user_calls(c.nr); };
    auto factory = [libc, handle, detach_symbol](ChainContext& cx, const Candidate&) {
      return dlclose_chain(cx, libc, handle, detach_symbol);
    };
    left = std::chrono::duration_cast<milliseconds>(deadline - clock::now());
    auto job = std::make_shared<OneShotJob>(factory, accept);
    engine_.submit(job);
    auto res = job->wait(std::min(left, kNudgeAfter));
    if (!res) {
      kick(l.pid, std::min(std::chrono::duration_cast<milliseconds>(deadline - clock::now()), milliseconds(2000)));
      res = job->wait(std::max(milliseconds(1), std::chrono::duration_cast<milliseconds>(deadline - clock::now())));
    }
    engine_.cancel(job, timeout);
    r.latency_ms = ms_since(start);
    if (!res) r.error = "the process entered no safe syscall in time";
    else if (!*res) r.error = res->error().what();
    else r.ok = true;
    results.push_back(std::move(r));
  }
  return results;
}

Expected<uint64_t> EngineInjector::add_exec_env(const std::string& glob, const execve::EnvEdit& edit) {
  if (!hooks_.exec_rules) return fail("exec environment injection is not available");
  return hooks_.exec_rules->add(glob, edit, execve::kFromDeploy);
}

void EngineInjector::remove_exec_env(uint64_t id) {
  if (hooks_.exec_rules) hooks_.exec_rules->remove(id);
}

}  // namespace gears::vmm::inject
