#include "devices/console.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

namespace gears::vmm::devices {

namespace {
constexpr std::string_view kPanicPattern = "Kernel panic - not syncing";
constexpr uint8_t kCtrlA = 0x01;

void write_all(int fd, const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a closed console must not stop the guest
    p += w;
    n -= static_cast<size_t>(w);
  }
}
}  // namespace

Expected<ConsoleSpec> parse_console_spec(const std::string& s) {
  ConsoleSpec c;
  if (s == "stdio") return c;
  if (s == "none") {
    c.kind = ConsoleSpec::Kind::None;
    return c;
  }
  auto with_path = [&](std::string_view prefix, ConsoleSpec::Kind k) -> bool {
    if (s.rfind(prefix, 0) != 0 || s.size() == prefix.size()) return false;
    c.kind = k;
    c.path = s.substr(prefix.size());
    return true;
  };
  if (with_path("file:", ConsoleSpec::Kind::File) || with_path("socket:", ConsoleSpec::Kind::Socket)) return c;
  return fail("bad console spec '" + s + "' (expected stdio, none, file:PATH or socket:PATH)");
}

bool PanicWatch::feed(uint8_t c) {
  if (c == static_cast<uint8_t>(kPanicPattern[matched_])) {
    if (++matched_ == kPanicPattern.size()) {
      matched_ = 0;
      return true;
    }
    return false;
  }
  // The pattern's first letter appears nowhere else in it, so restarting is exact.
  matched_ = c == static_cast<uint8_t>(kPanicPattern[0]) ? 1 : 0;
  return false;
}

Expected<std::unique_ptr<Console>> Console::open(const ConsoleSpec& spec, RunControl& control) {
  std::unique_ptr<Console> c(new Console(control));
  c->spec_ = spec;
  c->stop_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (c->stop_fd_ < 0) return fail_errno("eventfd");
  switch (spec.kind) {
    case ConsoleSpec::Kind::Stdio:
      c->out_fd_ = STDOUT_FILENO;
      c->in_fd_ = STDIN_FILENO;
      if (::isatty(STDIN_FILENO) && ::tcgetattr(STDIN_FILENO, &c->saved_) == 0) {
        termios raw = c->saved_;
        cfmakeraw(&raw);
        raw.c_oflag |= OPOST | ONLCR;  // keep host-side newline handling for the VMM's own messages
        if (::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0) c->raw_tty_ = true;
      }
      break;
    case ConsoleSpec::Kind::File: {
      int fd = ::open(spec.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) return fail_errno("console file " + spec.path);
      c->out_fd_ = fd;
      c->owns_out_ = true;
      break;
    }
    case ConsoleSpec::Kind::Socket: {
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      if (spec.path.size() >= sizeof addr.sun_path) return fail("console socket path too long: " + spec.path);
      std::memcpy(addr.sun_path, spec.path.c_str(), spec.path.size() + 1);
      c->listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (c->listen_fd_ < 0) return fail_errno("console socket");
      ::unlink(spec.path.c_str());
      if (::bind(c->listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0 || ::listen(c->listen_fd_, 1) < 0)
        return fail_errno("console socket " + spec.path);
      break;
    }
    case ConsoleSpec::Kind::None: break;
  }
  return c;
}

Console::~Console() {
  if (input_.joinable()) {
    uint64_t one = 1;
    (void)!::write(stop_fd_, &one, sizeof one);
    input_.join();
  }
  {
    std::lock_guard lock(out_mu_);
    flush_locked();
  }
  if (raw_tty_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  int out = out_fd_.load();
  if (spec_.kind == ConsoleSpec::Kind::Socket && out >= 0) ::close(out);
  if (owns_out_ && out >= 0) ::close(out);
  if (listen_fd_ >= 0) {
    ::close(listen_fd_);
    ::unlink(spec_.path.c_str());
  }
  if (stop_fd_ >= 0) ::close(stop_fd_);
}

void Console::output(uint8_t c) {
  std::lock_guard lock(out_mu_);
  if (panic_.feed(c)) control_.note_panic();
  if (spec_.kind == ConsoleSpec::Kind::File) {
    out_buf_.push_back(static_cast<char>(c));
    if (c == '\n' || out_buf_.size() >= 4096) flush_locked();
    return;
  }
  int fd = out_fd_.load(std::memory_order_relaxed);
  if (fd >= 0) write_all(fd, &c, 1);
}

void Console::flush_locked() {
  int fd = out_fd_.load(std::memory_order_relaxed);
  if (fd >= 0 && !out_buf_.empty()) write_all(fd, reinterpret_cast<const uint8_t*>(out_buf_.data()), out_buf_.size());
  out_buf_.clear();
}

void Console::start_input(std::function<void(std::span<const uint8_t>)> sink) {
  if (spec_.kind == ConsoleSpec::Kind::File || spec_.kind == ConsoleSpec::Kind::None) return;
  sink_ = std::move(sink);
  input_ = std::thread([this] { input_loop(); });
}

void Console::input_loop() {
  int in = in_fd_;
  bool saw_ctrl_a = false;
  uint8_t buf[256];
  for (;;) {
    pollfd fds[2] = {{stop_fd_, POLLIN, 0}, {in >= 0 ? in : listen_fd_, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[0].revents) return;
    if (!fds[1].revents) continue;
    if (in < 0) {  // socket console: accept the (one) client, which is both output and input
      int cfd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (cfd < 0) continue;
      in = cfd;
      out_fd_.store(cfd);
      continue;
    }
    ssize_t n = ::read(in, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (spec_.kind != ConsoleSpec::Kind::Socket) return;  // stdin closed: the guest just gets no more input
      out_fd_.store(-1);
      ::close(in);
      in = -1;  // wait for the next client
      continue;
    }
    if (raw_tty_) {
      // Ctrl-A x: leave the VM (the tty is raw, so Ctrl-C goes to the guest).
      size_t keep = 0;
      for (ssize_t i = 0; i < n; ++i) {
        if (saw_ctrl_a) {
          saw_ctrl_a = false;
          if (buf[i] == 'x') {
            control_.request_stop(StopReason::HostRequest, "Ctrl-A x");
            return;
          }
          if (buf[i] != kCtrlA) buf[keep++] = kCtrlA;  // Ctrl-A Ctrl-A sends one Ctrl-A
          buf[keep++] = buf[i];
        } else if (buf[i] == kCtrlA) {
          saw_ctrl_a = true;
        } else {
          buf[keep++] = buf[i];
        }
      }
      n = static_cast<ssize_t>(keep);
    }
    if (n > 0) sink_(std::span<const uint8_t>(buf, static_cast<size_t>(n)));
  }
}

}  // namespace gears::vmm::devices
