// gears-vmm: boot a Linux guest on KVM. Everything but argument handling and the process's
// signals lives in gears_vmm_core (builder.cpp composes the machine).
#include <signal.h>

#include <cstdio>
#include <thread>

#include "builder.h"
#include "config/vm_config.h"

namespace {

// SIGINT/SIGTERM end the run cleanly (vCPUs joined, tty restored): they are blocked in every
// thread and taken by one waiter thread.
void watch_signals(gears::vmm::RunControl& control, const sigset_t& set) {
  std::thread([&control, set] {
    int sig = 0;
    if (sigwait(&set, &sig) == 0) control.request_stop(gears::vmm::StopReason::HostRequest, strsignal(sig));
  }).detach();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gears::vmm;
  auto cfg = config::parse_args(argc, argv);
  if (!cfg) {
    std::fprintf(stderr, "gears-vmm: %s\n", cfg.error().what().c_str());
    return 1;
  }
  if (cfg->help) {
    std::fputs(config::usage().c_str(), stdout);
    return 0;
  }
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);

  auto machine = Machine::build(*cfg);
  if (!machine) {
    std::fprintf(stderr, "gears-vmm: %s\n", machine.error().what().c_str());
    return 1;
  }
  watch_signals((*machine)->control(), set);
  StopReason r = (*machine)->run();
  std::string detail = (*machine)->control().detail();
  machine->reset();  // restores the terminal before the last line
  if (detail.empty()) std::fprintf(stderr, "gears-vmm: %s\n", describe(r));
  else std::fprintf(stderr, "gears-vmm: %s: %s\n", describe(r), detail.c_str());
  return exit_code(r);
}
