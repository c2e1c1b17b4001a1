#include "control/control_server.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <vector>

#include "control/socket_path.h"

namespace gears::vmm::control {

struct ControlServer::Client {
  int fd = -1;
  std::string in;
  std::string out;
  bool closing = false;  // close once `out` is flushed
};

namespace {

Expected<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    return fail("control socket path \"" + path + "\" is empty or longer than " +
                std::to_string(sizeof addr.sun_path - 1) + " bytes");
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

// A socket file left behind: if nobody answers on it, it is stale and may go.
Expected<void> clear_stale(const std::string& path, const sockaddr_un& addr) {
  struct stat st{};
  if (lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    return fail_errno("checking " + path);
  }
  if (!S_ISSOCK(st.st_mode)) return fail(path + " exists and is not a socket; refusing to replace it");
  int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0) return fail_errno("socket");
  bool live = connect(probe, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0;
  close(probe);
  if (live) return fail("another gears-vmm is already listening on " + path);
  if (unlink(path.c_str()) != 0 && errno != ENOENT) return fail_errno("removing stale socket " + path);
  return {};
}

}  // namespace

Expected<std::unique_ptr<ControlServer>> ControlServer::start(const std::string& path,
                                                              const CommandRegistry& registry,
                                                              ServerLimits limits) {
  auto addr = unix_address(path);
  if (!addr) return fail(addr.error());
  GEARS_TRY(ensure_private_dir(socket_dir(path)));
  GEARS_TRY(clear_stale(path, *addr));

  std::unique_ptr<ControlServer> s(new ControlServer(path, registry, limits));
  s->listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (s->listen_fd_ < 0) return fail_errno("creating the control socket");
  if (bind(s->listen_fd_, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0)
    return fail_errno("binding the control socket " + path);
  // The directory is already 0700, so the moment between bind and chmod exposes nothing.
  if (chmod(path.c_str(), 0600) != 0) return fail_errno("chmod 0600 " + path);
  struct stat st{};
  if (stat(path.c_str(), &st) == 0) s->inode_ = st.st_ino;
  if (listen(s->listen_fd_, 16) != 0) return fail_errno("listening on " + path);
  s->wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s->wake_fd_ < 0) return fail_errno("eventfd");
  s->thread_ = std::thread([srv = s.get()] { srv->serve(); });
  return s;
}

ControlServer::~ControlServer() { stop(); }

void ControlServer::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  if (listen_fd_ >= 0) {
    // Remove the file only if it is still the one we bound (not a successor's).
    struct stat st{};
    if (inode_ != 0 && stat(path_.c_str(), &st) == 0 && st.st_ino == inode_) unlink(path_.c_str());
    close(listen_fd_);
    listen_fd_ = -1;
  }
  if (wake_fd_ >= 0) close(wake_fd_);
  wake_fd_ = -1;
}

void ControlServer::serve() {
  std::list<Client> clients;
  std::vector<pollfd> fds;
  std::vector<Client*> owners;
  char buf[4096];

  auto reply = [](Client& c, std::string line) {
    c.out += line;
    c.out += '\n';
  };

  for (;;) {
    fds.clear();
    owners.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    for (auto& c : clients) {
      short ev = c.closing ? 0 : POLLIN;
      if (!c.out.empty()) ev |= POLLOUT;
      fds.push_back({c.fd, ev, 0});
      owners.push_back(&c);
    }
    if (poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[0].revents) break;  // stop()

    if (fds[1].revents & POLLIN) {
      int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0) {
        ucred cred{};
        socklen_t len = sizeof cred;
        Client c{fd, {}, {}, false};
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 ||
            (cred.uid != geteuid() && cred.uid != 0)) {
          reply(c, CommandRegistry::to_line(CommandRegistry::error_reply("permission denied")));
          c.closing = true;
        } else if (clients.size() >= limits_.max_clients) {
          reply(c, CommandRegistry::to_line(CommandRegistry::error_reply(
                       "too many control clients (" + std::to_string(limits_.max_clients) + ")")));
          c.closing = true;
        }
        clients.push_back(std::move(c));
      }
    }

    for (size_t i = 2; i < fds.size(); ++i) {
      Client& c = *owners[i - 2];
      bool drop = false;
      if (fds[i].revents & (POLLERR | POLLNVAL)) drop = true;
      if (!drop && (fds[i].revents & (POLLIN | POLLHUP)) && !c.closing) {
        ssize_t n = recv(c.fd, buf, sizeof buf, 0);
        if (n == 0) c.closing = true;  // no more requests; finish sending replies, then close
        if (n < 0 && errno != EAGAIN && errno != EINTR) drop = true;  // the client vanished
        if (n > 0) {
          c.in.append(buf, static_cast<size_t>(n));
          size_t start = 0;
          for (size_t nl; (nl = c.in.find('\n', start)) != std::string::npos; start = nl + 1) {
            std::string_view line(c.in.data() + start, nl - start);
            if (line.size() > limits_.max_line) {
              start = c.in.size();
              c.closing = true;
              reply(c, CommandRegistry::to_line(CommandRegistry::error_reply(
                           "request longer than " + std::to_string(limits_.max_line) + " bytes")));
              break;
            }
            if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
            reply(c, registry_.handle_line(line));
          }
          c.in.erase(0, start);
          if (!c.closing && c.in.size() > limits_.max_line) {
            c.in.clear();
            c.closing = true;
            reply(c, CommandRegistry::to_line(CommandRegistry::error_reply(
                         "request longer than " + std::to_string(limits_.max_line) + " bytes")));
          }
        }
      }
      if (!drop && !c.out.empty()) {
        ssize_t n = send(c.fd, c.out.data(), c.out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) c.out.erase(0, static_cast<size_t>(n));
        else if (n < 0 && errno != EAGAIN && errno != EINTR) drop = true;
        if (c.out.size() > limits_.max_backlog) drop = true;  // it does not read its replies
      }
      if (!drop && c.closing && c.out.empty()) drop = true;
      if (drop) {
        close(c.fd);
        c.fd = -1;
      }
    }
    clients.remove_if([](const Client& c) { return c.fd < 0; });
  }
  for (auto& c : clients) close(c.fd);
}

}  // namespace gears::vmm::control
