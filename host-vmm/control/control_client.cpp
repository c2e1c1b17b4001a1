#include "control/control_client.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace gears::vmm::control {

namespace {
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

// Waits for `events` on fd within the time left until `deadline`; false on timeout.
Expected<bool> wait_for(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd, events, 0};
    int r = poll(&p, 1, static_cast<int>(left.count()));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return fail_errno("poll");
  }
}
}  // namespace

Expected<Json> call(const std::string& path, const Json& request, ClientOptions options) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return fail("control socket path \"" + path + "\" is empty or too long");
  std::memcpy(addr.sun_path, path.data(), path.size());

  Fd s{socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)};
  if (s.fd < 0) return fail_errno("socket");
  if (connect(s.fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    if (err == ENOENT || err == ECONNREFUSED)
      return fail("no gears-vmm is listening on " + path + " (is it running? use --socket PATH or $GEARS_SOCKET)");
    if (err == EACCES) return fail("permission denied connecting to " + path + " (it belongs to another user)");
    return fail_errno("connecting to " + path, err);
  }

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(options.timeout_ms);
  const std::string line = CommandRegistry::to_line(request) + "\n";
  for (size_t sent = 0; sent < line.size();) {
    auto ready = wait_for(s.fd, POLLOUT, deadline);
    if (!ready) return fail(ready.error());
    if (!*ready) return fail("gears-vmm on " + path + " did not accept the request in time");
    ssize_t n = send(s.fd, line.data() + sent, line.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    // Closed before it read the request: it may have answered first (a refused connection,
    // "too many control clients"); that answer, waiting to be read, says why.
    if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
    if (n < 0 && errno != EAGAIN && errno != EINTR) return fail_errno("sending to " + path);
    if (n > 0) sent += static_cast<size_t>(n);
  }

  std::string reply;
  char buf[65536];
  for (;;) {
    auto nl = reply.find('\n');
    if (nl != std::string::npos) {
      reply.resize(nl);
      break;
    }
    if (reply.size() > options.max_reply)
      return fail("gears-vmm on " + path + " sent a reply larger than " + std::to_string(options.max_reply) + " bytes");
    auto ready = wait_for(s.fd, POLLIN, deadline);
    if (!ready) return fail(ready.error());
    if (!*ready)
      return fail("gears-vmm on " + path + " did not answer within " + std::to_string(options.timeout_ms) + " ms");
    ssize_t n = recv(s.fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0) {
      if (reply.empty()) return fail("gears-vmm on " + path + " closed the connection without a reply");
      break;  // a last line without its newline
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail_errno("reading from " + path);
    }
    reply.append(buf, static_cast<size_t>(n));
  }
  Json j = Json::parse(reply, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return fail("gears-vmm on " + path + " sent a malformed reply");
  return j;
}

}  // namespace gears::vmm::control
