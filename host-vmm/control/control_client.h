// The client side of the control protocol (gearsctl, tests): one request, one reply.
#pragma once

#include <cstddef>
#include <string>

#include "control/command_registry.h"
#include "gears/expected.h"

namespace gears::vmm::control {

struct ClientOptions {
  int timeout_ms = 10'000;
  size_t max_reply = 64 * 1024 * 1024;
};

// Sends `request` to the gears-vmm listening on `path` and returns its parsed reply object
// (which may carry "ok":false: that is the VMM's answer, not a transport error). Errors are
// transport failures, phrased for a user: "no gears-vmm is listening on PATH ...".
Expected<Json> call(const std::string& path, const Json& request, ClientOptions options = {});

}  // namespace gears::vmm::control
