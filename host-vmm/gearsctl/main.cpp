// gearsctl: talk to a running gears-vmm through its control socket.
// Exit status: 0 success, 1 the VMM refused the request, 2 usage error, 3 no VMM / transport.
#include <cstdio>
#include <string>
#include <vector>

#include "control/control_client.h"
#include "control/socket_path.h"
#include "gearsctl/args.h"
#include "gearsctl/format.h"

int main(int argc, char** argv) {
  using namespace gears;
  std::vector<std::string> args(argv + 1, argv + argc);
  auto inv = ctl::parse_args(args);
  if (!inv) {
    std::fprintf(stderr, "gearsctl: %s (see gearsctl --help)\n", inv.error().what().c_str());
    return 2;
  }
  if (inv->help) {
    std::fputs(ctl::usage(), stdout);
    return 0;
  }
  const std::string path = inv->socket.empty() ? vmm::control::default_socket_path() : inv->socket;
  vmm::control::ClientOptions opts;
  opts.timeout_ms = inv->timeout_ms;
  auto reply = vmm::control::call(path, inv->request, opts);
  if (!reply) {
    std::fprintf(stderr, "gearsctl: %s\n", reply.error().what().c_str());
    return 3;
  }
  if (inv->json) {
    std::printf("%s\n", vmm::control::CommandRegistry::to_line(*reply).c_str());
    return reply->value("ok", false) ? 0 : 1;
  }
  if (!reply->value("ok", false)) {
    std::string err = "unknown error";
    if (auto it = reply->find("error"); it != reply->end() && it->is_string()) err = it->get<std::string>();
    std::fprintf(stderr, "gearsctl: %s\n", err.c_str());
    return 1;
  }
  std::fputs(ctl::format_reply(inv->request.value("cmd", ""), *reply).c_str(), stdout);
  return 0;
}
