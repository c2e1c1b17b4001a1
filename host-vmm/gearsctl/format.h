// Human-readable rendering of control replies: tables for lists, "key: value" for the rest.
#pragma once

#include <string>

#include "control/command_registry.h"

namespace gears::ctl {

// Renders a successful reply to `cmd`. Known commands get chosen columns; any other reply is
// rendered generically (arrays of objects as tables, other fields as "key: value").
std::string format_reply(const std::string& cmd, const vmm::control::Json& reply);

}  // namespace gears::ctl
