// Deploying a service bundle into the running guest (doc/deploy.md), the VMM side: validate the
// whole bundle, load the VMM half, then drive the GuestInjector for the guest halves. Each
// deploy is all-or-nothing: the first failure undoes every step done so far, in reverse.
//
//   deploy:   (a) check_bundle (container, manifest, ELF halves, vermagic vs the guest's
//                 release); a service name or id already deployed is refused
//             (b) VMM half: memfd + dlopen, descriptor checked against the manifest,
//                 start(ServiceHost&), its hypercalls into the dispatcher
//             (c) kernel half: injector.load_module
//             (d) user half: injector.write_file(<user_dir>/gears-<service>.user.so, 0644)
//             (e) injector.load_library(selector, path, "gears_user_attach_v1") for running
//                 processes (per-process failures are reported, not fatal)
//             (f) injector.add_exec_env(glob, {LD_PRELOAD, path, kPrepend}) per manifest program
//   undeploy: the reverse (detach "gears_user_detach_v1"), continuing past errors.
//
// Runs on the control thread; the injector blocks it until the guest did the work.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "control/command_registry.h"
#include "deploy/bundle_check.h"
#include "deploy/guest_injector.h"
#include "deploy/plugin_library.h"
#include "deploy/plugin_service_host.h"
#include "deploy/syscall_subscriptions.h"
#include "gears/abi/manifest.h"
#include "tools/hypercall/dispatcher.h"

namespace gears::vmm::deploy {

inline constexpr const char* kUserAttachSymbol = GEARS_USER_ATTACH_ENTRY;  // gears/abi/manifest.h
inline constexpr const char* kUserDetachSymbol = GEARS_USER_DETACH_ENTRY;

struct DeployOptions {
  // Running processes that get the user half; none: an exe glob per manifest interpose program.
  std::optional<ProcessSelector> selector;
  // For the whole deploy (every guest step shares it); undoing gets the same again per step.
  std::chrono::milliseconds timeout{30'000};
};

struct ManagerConfig {
  GuestInjector* injector = nullptr;                  // null: bundles with guest halves are refused
  hypercall::HypercallDispatcher* dispatcher = nullptr;  // required
  SyscallSubscriptions* subscriptions = nullptr;      // null: on_syscall/on_process fail
  std::string guest_release;                          // x86::kernel_release of the guest's bzImage
  std::string user_dir = "/run";                      // guest directory for user halves (root-only)
  PluginOpener open_plugin = PluginLibrary::open;
  HostResources resources;                            // what of the VM services may reach
};

struct UndeployReport {
  std::vector<std::string> errors;  // what could not be undone (the service is gone regardless)
  double undeploy_ms = 0;
};

class ServiceManager {
 public:
  explicit ServiceManager(ManagerConfig config);
  // Takes the VMM halves out of the dispatcher; does no guest work (the guest is stopping).
  ~ServiceManager();
  ServiceManager(const ServiceManager&) = delete;
  ServiceManager& operator=(const ServiceManager&) = delete;

  // The deployed service's status (as one entry of services()).
  Expected<control::Json> deploy(std::span<const uint8_t> bundle, const DeployOptions& options);
  Expected<control::Json> deploy_file(const std::string& host_path, const DeployOptions& options);
  Expected<UndeployReport> undeploy(const std::string& service,
                                    std::chrono::milliseconds timeout = std::chrono::milliseconds(30'000));
  control::Json services() const;  // {"services":[...]}
  control::Json counters() const;  // {"<service>": {"<counter>": n, ...}, ...}

  // deploy, undeploy, services (doc/deploy.md).
  Expected<void> register_commands(control::CommandRegistry& registry);

 private:
  struct Service {
    ServiceBundle bundle;
    std::shared_ptr<PluginServiceHost> host;  // the VMM half, when loaded
    bool module_loaded = false;
    std::string user_path;                    // written into the guest (empty: not written)
    std::vector<ProcessInjection> processes;  // load_library results
    std::vector<std::string> env_globs;
    std::vector<uint64_t> env_ids;
    double deploy_ms = 0;     // the whole deploy, bundle checks included
    double module_ms = 0;     // the kernel half's load_module alone
    double user_file_ms = 0;  // writing the user half into the guest
  };

  Expected<void> load_vmm_half(Service& s);
  Expected<void> load_guest_halves(Service& s, const DeployOptions& options);
  void undo(Service& s, std::chrono::milliseconds timeout, std::vector<std::string>& errors);
  control::Json status(const Service& s) const;

  ManagerConfig config_;
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Service>> services_;  // deployed, by name
  std::map<std::string, uint16_t> pending_;                   // being deployed: name -> id
};

}  // namespace gears::vmm::deploy
