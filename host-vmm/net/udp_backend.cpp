#include "net/udp_backend.h"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace gears::vmm::net {

namespace {

// Errors that may belong to an earlier send (an ICMP report delivered on this call).
bool async_error(int e) {
  return e == ECONNREFUSED || e == EHOSTUNREACH || e == ENETUNREACH || e == EHOSTDOWN;
}

}  // namespace

Expected<std::shared_ptr<UdpBackend>> UdpBackend::open(const Endpoint& local) {
  const int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return fail_errno("overlay: creating a UDP socket");
  const int one = 1;
  if (setsockopt(fd, IPPROTO_IP, IP_RECVERR, &one, sizeof one) != 0) {
    const int e = errno;
    close(fd);
    return fail_errno("overlay: setting IP_RECVERR", e);
  }
  sockaddr_in sa = local.sockaddr();
  if (bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    close(fd);
    return fail_errno("overlay: binding UDP " + to_string(local), e);
  }
  socklen_t len = sizeof sa;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) != 0) {
    const int e = errno;
    close(fd);
    return fail_errno("overlay: getsockname", e);
  }
  const int wake = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake < 0) {
    const int e = errno;
    close(fd);
    return fail_errno("overlay: eventfd", e);
  }
  auto st = std::make_shared<State>();
  st->fd = fd;
  st->wake_fd = wake;
  return std::shared_ptr<UdpBackend>(new UdpBackend(std::move(st), Endpoint::from(sa)));
}

UdpBackend::State::~State() {
  close(fd);
  close(wake_fd);
}

UdpBackend::~UdpBackend() { stop(); }

Expected<void> UdpBackend::start(Receive rx, PeerError on_error) {
  std::lock_guard lk(mu_);
  if (started_) return fail("overlay: the UDP backend can be started once");
  started_ = true;
  st_->rx = std::move(rx);
  st_->on_error = std::move(on_error);
  thread_ = std::thread([st = st_] { loop(*st); });
  return {};
}

void UdpBackend::stop() {
  std::lock_guard lk(mu_);
  if (!thread_.joinable()) return;
  st_->stop = true;
  const uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(st_->wake_fd, &one, sizeof one);
  if (thread_.get_id() == std::this_thread::get_id())
    thread_.detach();  // see State
  else
    thread_.join();
}

SendStatus UdpBackend::send(const Endpoint& to, std::span<const uint8_t> packet) {
  const sockaddr_in sa = to.sockaddr();
  // An ICMP error for an earlier packet fails the next call on the socket without sending
  // (and reading the error queue on the receive thread can re-arm it while entries remain),
  // so such errors are retried a few times; only a send that keeps failing is a drop.
  constexpr int kAttempts = 8;
  int e = 0;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    const ssize_t n = sendto(st_->fd, packet.data(), packet.size(), MSG_DONTWAIT | MSG_NOSIGNAL,
                             reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
    if (n >= 0) return SendStatus::kOk;
    e = errno;
    if (e != EINTR && !async_error(e)) break;
  }
  if (async_error(e) || e == EACCES || e == EPERM) return SendStatus::kUnreachable;
  if (e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS) return SendStatus::kNoBuffer;
  return SendStatus::kError;
}

// ICMP errors for earlier sends: each names the original destination (the vanished peer).
void UdpBackend::drain_errors(State& st) {
  for (;;) {
    sockaddr_in peer{};
    uint8_t data[64];
    alignas(cmsghdr) uint8_t control[512];
    iovec iov{data, sizeof data};
    msghdr msg{};
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof peer;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(st.fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return;
    int err = 0;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) {
        sock_extended_err ee;
        std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
        err = static_cast<int>(ee.ee_errno);
      }
    }
    if (err != 0 && msg.msg_namelen >= sizeof peer && !st.stop && st.on_error)
      st.on_error(Endpoint::from(peer), err);
  }
}

void UdpBackend::loop(State& st) {
  // Large enough for any UDP datagram, so an oversized packet is seen whole and rejected by
  // the switch's length checks instead of arriving silently truncated.
  std::vector<uint8_t> buf(65536);
  while (!st.stop) {
    pollfd fds[2] = {{st.fd, POLLIN, 0}, {st.wake_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (st.stop) return;
    if (fds[0].revents & POLLERR) drain_errors(st);
    if (!(fds[0].revents & POLLIN)) continue;
    // A bounded batch per wakeup keeps the error queue and stop requests serviced.
    for (int i = 0; i < 64 && !st.stop; ++i) {
      sockaddr_in from{};
      socklen_t len = sizeof from;
      const ssize_t n = recvfrom(st.fd, buf.data(), buf.size(), MSG_DONTWAIT,
                                 reinterpret_cast<sockaddr*>(&from), &len);
      if (n < 0) {
        if (errno == EINTR || async_error(errno)) continue;  // a pending ICMP error, consumed
        break;                                                // EAGAIN: drained
      }
      if (len < sizeof from || from.sin_family != AF_INET) continue;
      st.rx(Endpoint::from(from), std::span(buf.data(), static_cast<size_t>(n)));
    }
  }
}

}  // namespace gears::vmm::net
