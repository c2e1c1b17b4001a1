// What to run: the VM configuration, from a small JSON file (Firecracker-like keys) and the
// command line, the command line winning. Validation gives one-line errors, never a crash.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "devices/console.h"
#include "gears/expected.h"
#include "net/overlay_config.h"
#include "shm/region_spec.h"

namespace gears::vmm::config {

inline constexpr uint64_t kMinMemory = 64ULL << 20;   // the Debian kernel + a small initramfs
inline constexpr uint64_t kMaxMemory = 1ULL << 40;
inline constexpr uint32_t kMaxVcpusHard = 254;         // APIC ids fit in 8 bits, 255 is broadcast

struct VmConfig {
  std::string kernel;
  std::string initrd;
  std::string cmdline;
  uint32_t vcpus = 1;
  uint64_t mem_bytes = 512ULL << 20;
  devices::ConsoleSpec console;
  std::optional<devices::ConsoleSpec> virtio_console;
  std::vector<std::string> virtio_blk;
  std::vector<net::NicSpec> nics;  // --net, in order: eth0, eth1, ...
  std::vector<shm::RegionSpec> shared_regions;  // --shm, memory shared with co-located VMs
  std::string kvm_device = "/dev/kvm";
  bool force_pvm = false;
  bool help = false;
};

// "512M", "2G", "1024" (MiB when no suffix, as in --mem 1024), "65536K".
Expected<uint64_t> parse_size(const std::string& s);

// Applies a JSON document (the text of a --config file) onto `cfg`.
Expected<void> apply_json(const std::string& text, VmConfig& cfg);

// Parses argv; --config FILE is read first wherever it appears, then the other flags override it.
Expected<VmConfig> parse_args(int argc, const char* const* argv);

// Checks values and that the files exist; `max_vcpus` comes from KVM (0: not known yet).
Expected<void> validate(const VmConfig& cfg, int max_vcpus);

// The guest command line: the user's, plus what the platform needs unless already given
// (console=ttyS0, panic=-1 so a panic ends the VM, reboot=acpi, 8250.nr_uarts=1).
std::string kernel_cmdline(const VmConfig& cfg);

// The --help text (options, defaults, exit codes).
std::string usage();

}  // namespace gears::vmm::config
