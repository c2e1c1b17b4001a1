// time-to-marker [--timeout SECONDS] [--echo] MARKER -- COMMAND [ARG]...
//
// Starts COMMAND in its own process group with stdout and stderr on a pipe, reads its output
// and prints, on stdout, the seconds from start until the first line containing MARKER
// (e.g. "6.123"); then kills the whole process group. Used by tests/bench/boot-bench to time
// VMM boots to the guest's GEARS-GUEST-READY line.
//
// Exit status: 0 marker seen; 1 COMMAND ended without it; 2 timed out; 3 usage or system error.
// On 1 and 2 the last lines of COMMAND's output go to stderr (--echo copies all of it there).
#include <gears/expected.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace gears::bench {
namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  double timeout_s = 300;
  bool echo = false;
  std::string marker;
  std::vector<char*> command;  // null-terminated for execvp
};

constexpr int kExitSeen = 0;
constexpr int kExitEnded = 1;
constexpr int kExitTimeout = 2;
constexpr int kExitError = 3;
constexpr size_t kTailLines = 20;

Expected<Options> parse(int argc, char** argv) {
  Options o;
  int i = 1;
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--timeout" && i + 1 < argc) {
      char* end = nullptr;
      o.timeout_s = std::strtod(argv[++i], &end);
      if (*end != '\0' || o.timeout_s <= 0) return fail("--timeout needs a positive number");
    } else if (a == "--echo") {
      o.echo = true;
    } else if (a == "--") {
      return fail("MARKER missing before --");
    } else {
      break;
    }
  }
  if (i + 2 >= argc || std::string_view(argv[i + 1]) != "--")
    return fail("usage: time-to-marker [--timeout SECONDS] [--echo] MARKER -- COMMAND [ARG]...");
  o.marker = argv[i];
  if (o.marker.empty()) return fail("MARKER must not be empty");
  for (int j = i + 2; j < argc; ++j) o.command.push_back(argv[j]);
  o.command.push_back(nullptr);
  return o;
}

struct Child {
  pid_t pid = -1;
  int out_fd = -1;
};

Expected<Child> spawn(const Options& o) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return fail_errno("pipe");
  pid_t pid = fork();
  if (pid < 0) return fail_errno("fork");
  if (pid == 0) {
    // Own process group: the parent kills everything COMMAND started (VMMs under `timeout`).
    setpgid(0, 0);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    int null_fd = open("/dev/null", O_RDONLY);
    if (null_fd >= 0) dup2(null_fd, STDIN_FILENO);
    execvp(o.command[0], o.command.data());
    std::fprintf(stderr, "time-to-marker: cannot run %s: %s\n", o.command[0], std::strerror(errno));
    _exit(127);
  }
  setpgid(pid, pid);  // also here: no race with the kill below
  close(fds[1]);
  return Child{pid, fds[0]};
}

// Reads COMMAND's output line by line until the marker, EOF or the deadline.
class Watcher {
 public:
  explicit Watcher(const Options& o) : o_(o) {}

  // Seconds until the marker, or nullopt with *timed_out telling why not.
  std::optional<double> run(int fd, Clock::time_point start, bool* timed_out) {
    const auto deadline = start + std::chrono::duration<double>(o_.timeout_s);
    char buf[4096];
    *timed_out = false;
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) {
        *timed_out = true;
        return std::nullopt;
      }
      pollfd p{fd, POLLIN, 0};
      int r = poll(&p, 1, static_cast<int>(left.count()));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) continue;  // timeout is handled at the loop head
      ssize_t n = read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        if (!line_.empty() && feed_line()) return elapsed(start);
        return std::nullopt;
      }
      if (o_.echo) (void)!write(STDERR_FILENO, buf, static_cast<size_t>(n));
      for (ssize_t k = 0; k < n; ++k) {
        if (buf[k] != '\n') {
          line_.push_back(buf[k]);
          continue;
        }
        if (feed_line()) return elapsed(start);
      }
    }
  }

  const std::deque<std::string>& tail() const { return tail_; }

 private:
  static double elapsed(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  // True when the finished line holds the marker.
  bool feed_line() {
    if (!line_.empty() && line_.back() == '\r') line_.pop_back();
    bool hit = line_.find(o_.marker) != std::string::npos;
    tail_.push_back(std::move(line_));
    if (tail_.size() > kTailLines) tail_.pop_front();
    line_.clear();
    return hit;
  }

  const Options& o_;
  std::string line_;
  std::deque<std::string> tail_;
};

int main_impl(int argc, char** argv) {
  auto opts = parse(argc, argv);
  if (!opts) {
    std::fprintf(stderr, "time-to-marker: %s\n", opts.error().what().c_str());
    return kExitError;
  }
  signal(SIGPIPE, SIG_IGN);
  const auto start = Clock::now();
  auto child = spawn(*opts);
  if (!child) {
    std::fprintf(stderr, "time-to-marker: %s\n", child.error().what().c_str());
    return kExitError;
  }
  Watcher watcher(*opts);
  bool timed_out = false;
  auto seconds = watcher.run(child->out_fd, start, &timed_out);
  kill(-child->pid, SIGKILL);
  int status = 0;
  while (waitpid(child->pid, &status, 0) < 0 && errno == EINTR) {
  }
  close(child->out_fd);

  if (seconds) {
    std::printf("%.3f\n", *seconds);
    return kExitSeen;
  }
  if (!opts->echo)
    for (const auto& l : watcher.tail()) std::fprintf(stderr, "  | %s\n", l.c_str());
  if (timed_out) {
    std::fprintf(stderr, "time-to-marker: '%s' not seen within %g s\n", opts->marker.c_str(),
                 opts->timeout_s);
    return kExitTimeout;
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  std::fprintf(stderr, "time-to-marker: '%s' not seen; %s ended with status %d\n",
               opts->marker.c_str(), opts->command[0], code);
  return kExitEnded;
}

}  // namespace
}  // namespace gears::bench

int main(int argc, char** argv) { return gears::bench::main_impl(argc, argv); }
