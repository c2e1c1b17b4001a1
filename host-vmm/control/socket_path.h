// Where the control socket lives, and the checks that keep it private to its owner.
#pragma once

#include <string>

#include "gears/expected.h"

namespace gears::vmm::control {

// $GEARS_SOCKET if set, else $XDG_RUNTIME_DIR/gears/vmm.sock, else /tmp/gears-<uid>/vmm.sock.
std::string default_socket_path();

// The directory part of a socket path ("." for a bare name).
std::string socket_dir(const std::string& path);

// Creates `dir` (one level) with mode 0700 if missing, then insists that it is a real directory
// owned by this user with no group/other access: anyone who can enter it could connect.
Expected<void> ensure_private_dir(const std::string& dir);

}  // namespace gears::vmm::control
