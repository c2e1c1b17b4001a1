// The control socket server: a UNIX stream socket, owner-only, served by one thread that reads
// request lines and answers them through a CommandRegistry.
//
// Robustness: every client socket is non-blocking; a request line longer than max_line gets an
// error reply and the connection is closed; a client that stops reading is dropped once its
// unsent replies exceed max_backlog; a client that vanishes is simply forgotten; peers of
// another uid are refused (SO_PEERCRED) even if the permissions were loosened.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <thread>

#include "control/command_registry.h"
#include "gears/expected.h"

namespace gears::vmm::control {

struct ServerLimits {
  size_t max_line = 64 * 1024;
  size_t max_clients = 16;
  size_t max_backlog = 16 * 1024 * 1024;
};

class ControlServer {
 public:
  // Binds `path` (its directory made/checked private), then serves on a new thread until
  // stop() or destruction. A stale socket left by a dead VMM is replaced; a live one is an error.
  static Expected<std::unique_ptr<ControlServer>> start(const std::string& path, const CommandRegistry& registry,
                                                        ServerLimits limits = {});
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  void stop();  // idempotent; joins the thread, removes the socket file if it is still ours
  const std::string& path() const { return path_; }

 private:
  struct Client;
  ControlServer(std::string path, const CommandRegistry& registry, ServerLimits limits)
      : path_(std::move(path)), registry_(registry), limits_(limits) {}
  void serve();

  std::string path_;
  const CommandRegistry& registry_;
  ServerLimits limits_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop() pokes it to end poll()
  unsigned long inode_ = 0;
  std::thread thread_;
};

}  // namespace gears::vmm::control
