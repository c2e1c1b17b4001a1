#include "config/vm_config.h"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "virtio/blk.h"

namespace gears::vmm::config {

namespace {

using nlohmann::json;

Expected<void> check_file(const std::string& path, const char* what) {
  struct stat st{};
  if (::stat(path.c_str(), &st) < 0) return fail_errno(std::string(what) + " " + path);
  if (!S_ISREG(st.st_mode)) return fail(std::string(what) + " " + path + ": not a regular file");
  return {};
}

// JSON values may be a spec string ("file:/tmp/out") or an object {"type": "file", "path": ...}.
Expected<devices::ConsoleSpec> console_from_json(const json& j, const char* key) {
  if (j.is_string()) return devices::parse_console_spec(j.get<std::string>());
  if (j.is_object()) {
    std::string type = j.value("type", std::string("stdio"));
    std::string path = j.value("path", std::string());
    return devices::parse_console_spec(path.empty() ? type : type + ":" + path);
  }
  return fail(std::string("config: \"") + key + "\" must be a string or an object");
}

Expected<void> apply_json_checked(const json& doc, VmConfig& cfg) {
  if (!doc.is_object()) return fail("config: top level must be a JSON object");
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    const std::string& key = it.key();
    const json& v = it.value();
    if (key == "boot-source") {
      if (!v.is_object()) return fail("config: \"boot-source\" must be an object");
      if (v.contains("kernel_image_path")) cfg.kernel = v.at("kernel_image_path").get<std::string>();
      if (v.contains("initrd_path")) cfg.initrd = v.at("initrd_path").get<std::string>();
      if (v.contains("boot_args")) cfg.cmdline = v.at("boot_args").get<std::string>();
    } else if (key == "machine-config") {
      if (!v.is_object()) return fail("config: \"machine-config\" must be an object");
      if (v.contains("vcpu_count")) {
        int64_t n = v.at("vcpu_count").get<int64_t>();
        if (n < 0 || n > 100000) return fail("config: vcpu_count out of range");
        cfg.vcpus = static_cast<uint32_t>(n);
      }
      if (v.contains("mem_size_mib")) {
        int64_t m = v.at("mem_size_mib").get<int64_t>();
        if (m < 0 || static_cast<uint64_t>(m) > (kMaxMemory >> 20)) return fail("config: mem_size_mib out of range");
        cfg.mem_bytes = static_cast<uint64_t>(m) << 20;
      }
    } else if (key == "console") {
      auto c = console_from_json(v, "console");
      if (!c) return fail(c.error());
      cfg.console = *c;
    } else if (key == "virtio-console") {
      auto c = console_from_json(v, "virtio-console");
      if (!c) return fail(c.error());
      cfg.virtio_console = *c;
    } else if (key == "virtio-blk") {
      auto one = [&](const json& d) -> Expected<void> {
        if (d.is_string()) cfg.virtio_blk.push_back(d.get<std::string>());
        else if (d.is_object() && d.contains("path")) cfg.virtio_blk.push_back(d.at("path").get<std::string>());
        else return fail("config: \"virtio-blk\" entries must be a path or {\"path\": ...}");
        return {};
      };
      if (v.is_array()) {
        for (const auto& d : v) GEARS_TRY(one(d));
      } else {
        GEARS_TRY(one(v));
      }
    } else if (key == "net") {
      // "mac=..,overlay=..,mtu=N" (as --net) or {"mac": .., "overlay": .., "mtu": N, ...}; one or a list.
      auto one = [&](const json& d) -> Expected<void> {
        std::string spec;
        if (d.is_string()) {
          spec = d.get<std::string>();
        } else if (d.is_object()) {
          for (auto f = d.begin(); f != d.end(); ++f) {
            if (f.key() != "mac" && f.key() != "overlay" && f.key() != "mtu" && f.key() != "offload" && f.key() != "tx")
              return fail("config: \"net\": unknown key \"" + f.key() + "\" (mac, overlay, mtu, offload, tx)");
            if (!f.value().is_string() && !f.value().is_number_unsigned())
              return fail("config: \"net\": \"" + f.key() + "\" must be a string or a number");
            if (!spec.empty()) spec += ',';
            spec += f.key() + "=" + (f.value().is_number_unsigned() ? std::to_string(f.value().get<uint64_t>())
                                                                    : f.value().get<std::string>());
          }
        } else {
          return fail("config: \"net\" entries must be a string or an object");
        }
        if (spec.find(',') != std::string::npos && d.is_object()) {
          // Values from an object may not smuggle extra keys in through a comma.
          for (auto f = d.begin(); f != d.end(); ++f)
            if (f.value().is_string() && f.value().get<std::string>().find(',') != std::string::npos)
              return fail("config: \"net\": \"" + f.key() + "\" must not contain ','");
        }
        auto n = net::parse_nic_spec(spec);
        if (!n) return fail("config: " + n.error().what());
        cfg.nics.push_back(std::move(*n));
        return {};
      };
      if (v.is_array()) {
        for (const auto& d : v) GEARS_TRY(one(d));
      } else {
        GEARS_TRY(one(v));
      }
    } else if (key == "shm") {
      // "name=..,size=..[,path=..]" (as --shm); one or a list.
      auto one = [&](const json& d) -> Expected<void> {
        if (!d.is_string()) return fail("config: \"shm\" entries must be strings like \"name=mpi,size=64M\"");
        auto r = shm::parse_region_spec(d.get<std::string>());
        if (!r) return fail("config: " + r.error().what());
        cfg.shared_regions.push_back(std::move(*r));
        return {};
      };
      if (v.is_array()) {
        for (const auto& d : v) GEARS_TRY(one(d));
      } else {
        GEARS_TRY(one(v));
      }
    } else {
      return fail("config: unknown key \"" + key + "\"");
    }
  }
  return {};
}

}  // namespace

Expected<uint64_t> parse_size(const std::string& s) {
  if (s.empty() || !std::isdigit(static_cast<unsigned char>(s[0]))) return fail("bad size '" + s + "'");
  errno = 0;
  char* end = nullptr;
  unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0) return fail("bad size '" + s + "'");
  std::string_view suffix(end);
  uint64_t shift = 20;  // bare numbers are MiB
  if (suffix == "K" || suffix == "k" || suffix == "KiB") shift = 10;
  else if (suffix == "M" || suffix == "m" || suffix == "MiB" || suffix.empty()) shift = 20;
  else if (suffix == "G" || suffix == "g" || suffix == "GiB") shift = 30;
  else return fail("bad size '" + s + "' (use K, M or G)");
  if (v > (kMaxMemory >> shift)) return fail("size '" + s + "' too large");
  return static_cast<uint64_t>(v) << shift;
}

Expected<void> apply_json(const std::string& text, VmConfig& cfg) {
  json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) return fail("config: not valid JSON");
  // nlohmann reports wrong value types by throwing; keep that inside this boundary.
  try {
    return apply_json_checked(doc, cfg);
  } catch (const json::exception& e) {
    return fail(std::string("config: ") + e.what());
  }
}

Expected<VmConfig> parse_args(int argc, const char* const* argv) {
  VmConfig cfg;
  // Pass 1: the config file, so that flags given anywhere override it.
  for (int i = 1; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--config") {
      if (i + 1 >= argc) return fail("--config needs a file");
      std::ifstream f(argv[i + 1]);
      if (!f) return fail(std::string("config file ") + argv[i + 1] + ": cannot open");
      std::stringstream ss;
      ss << f.rdbuf();
      auto r = apply_json(ss.str(), cfg);
      if (!r) return fail(std::string(argv[i + 1]) + ": " + r.error().what());
    }
  }
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto value = [&]() -> Expected<std::string> {
      if (i + 1 >= argc) return fail(std::string(a) + " needs a value");
      return std::string(argv[++i]);
    };
#define GEARS_VALUE(var)          \
  auto var = value();             \
  if (!var) return fail(var.error())
    if (a == "--help" || a == "-h") {
      cfg.help = true;
    } else if (a == "--force-pvm") {
      cfg.force_pvm = true;
    } else if (a == "--config") {
      ++i;
    } else if (a == "--kernel") {
      GEARS_VALUE(v);
      cfg.kernel = *v;
    } else if (a == "--initrd") {
      GEARS_VALUE(v);
      cfg.initrd = *v;
    } else if (a == "--cmdline") {
      GEARS_VALUE(v);
      cfg.cmdline = *v;
    } else if (a == "--cpus") {
      GEARS_VALUE(v);
      char* end = nullptr;
      errno = 0;
      long n = std::strtol(v->c_str(), &end, 10);
      if (v->empty() || *end != '\0' || errno != 0 || n < 0 || n > 100000) return fail("--cpus: bad number '" + *v + "'");
      cfg.vcpus = static_cast<uint32_t>(n);
    } else if (a == "--mem") {
      GEARS_VALUE(v);
      auto m = parse_size(*v);
      if (!m) return fail("--mem: " + m.error().what());
      cfg.mem_bytes = *m;
    } else if (a == "--console") {
      GEARS_VALUE(v);
      auto c = devices::parse_console_spec(*v);
      if (!c) return fail("--console: " + c.error().what());
      cfg.console = *c;
    } else if (a == "--virtio-console") {
      GEARS_VALUE(v);
      auto c = devices::parse_console_spec(*v);
      if (!c) return fail("--virtio-console: " + c.error().what());
      cfg.virtio_console = *c;
    } else if (a == "--virtio-blk") {
      GEARS_VALUE(v);
      cfg.virtio_blk.push_back(*v);
    } else if (a == "--net") {
      GEARS_VALUE(v);
      auto n = net::parse_nic_spec(*v);
      if (!n) return fail(n.error());
      cfg.nics.push_back(std::move(*n));
    } else if (a == "--shm") {
      GEARS_VALUE(v);
      auto r = shm::parse_region_spec(*v);
      if (!r) return fail(r.error());
      cfg.shared_regions.push_back(std::move(*r));
    } else if (a == "--kvm-device") {
      GEARS_VALUE(v);
      cfg.kvm_device = *v;
    } else {
      return fail("unknown option '" + std::string(a) + "' (see --help)");
    }
#undef GEARS_VALUE
  }
  return cfg;
}

Expected<void> validate(const VmConfig& cfg, int max_vcpus) {
  if (cfg.kernel.empty()) return fail("no kernel given (--kernel or boot-source.kernel_image_path)");
  if (cfg.vcpus == 0) return fail("--cpus must be at least 1");
  if (cfg.vcpus > kMaxVcpusHard) return fail("--cpus " + std::to_string(cfg.vcpus) + " exceeds gears-vmm's limit of " + std::to_string(kMaxVcpusHard));
  if (max_vcpus > 0 && cfg.vcpus > static_cast<uint32_t>(max_vcpus))
    return fail("--cpus " + std::to_string(cfg.vcpus) + " exceeds KVM's maximum of " + std::to_string(max_vcpus));
  if (cfg.mem_bytes < kMinMemory)
    return fail("--mem " + std::to_string(cfg.mem_bytes >> 20) + "M is too small (at least " + std::to_string(kMinMemory >> 20) + "M)");
  GEARS_TRY(check_file(cfg.kernel, "kernel"));
  if (!cfg.initrd.empty()) GEARS_TRY(check_file(cfg.initrd, "initrd"));
  for (const auto& b : cfg.virtio_blk) {
    auto spec = virtio::parse_blk_spec(b);  // a bare path or path=..,sched=..: the file either way
    if (!spec) return fail(spec.error());
    GEARS_TRY(check_file(spec->path, "virtio-blk image"));
  }
  for (size_t i = 0; i < cfg.nics.size(); ++i) {
    if (!cfg.nics[i].overlay.empty()) GEARS_TRY(check_file(cfg.nics[i].overlay, "--net overlay configuration"));
    for (size_t j = 0; j < i; ++j)
      if (cfg.nics[j].mac == cfg.nics[i].mac)
        return fail("--net: mac " + net::to_string(cfg.nics[i].mac) + " is given twice");
  }
  for (size_t i = 0; i < cfg.shared_regions.size(); ++i)
    for (size_t j = 0; j < i; ++j) {
      if (cfg.shared_regions[j].name == cfg.shared_regions[i].name)
        return fail("--shm: name " + cfg.shared_regions[i].name + " is given twice");
      if (cfg.shared_regions[j].path == cfg.shared_regions[i].path)
        return fail("--shm: path " + cfg.shared_regions[i].path + " is given twice");
    }
  if (cfg.shared_regions.size() > 16) return fail("too many --shm regions (at most 16)");
  if (cfg.virtio_blk.size() + cfg.nics.size() + (cfg.virtio_console ? 1 : 0) > 8)
    return fail("too many virtio devices (at most 8)");
  return {};
}

std::string kernel_cmdline(const VmConfig& cfg) {
  std::string c = cfg.cmdline;
  auto has = [&](std::string_view key) {
    // A parameter at the start or after a space.
    for (size_t p = c.find(key); p != std::string::npos; p = c.find(key, p + 1))
      if (p == 0 || c[p - 1] == ' ') return true;
    return false;
  };
  auto add = [&](const std::string& piece) {
    if (!c.empty()) c += ' ';
    c += piece;
  };
  if (!has("console=")) add("console=ttyS0");
  // panic=-1: reboot at once on panic; gears-vmm sees the reset and reports the panic.
  if (!has("panic=")) add("panic=-1");
  // reboot=acpi: on HW-reduced ACPI Linux would otherwise pick EFI, then the BIOS reset
  // vector (x86/reset_stub.h catches that too, but this is the direct path).
  if (!has("reboot=")) add("reboot=acpi");
  // Only COM1 exists: skip probing three absent UARTs (each probe is a run of exits).
  if (!has("8250.nr_uarts=")) add("8250.nr_uarts=1");
  return c;
}

std::string usage() {
  return R"(usage: gears-vmm --kernel BZIMAGE [options]

Boots a Linux bzImage on KVM (hardware KVM: kvm_intel or kvm_amd).

  --kernel PATH           bzImage (boot protocol >= 2.12, 64-bit entry)
  --initrd PATH           initramfs
  --cpus N                vCPUs (default 1; at most KVM's maximum)
  --mem SIZE              guest RAM, e.g. 512M, 2G (default 512M; at least 64M)
  --cmdline "ARGS"        kernel command line; gears-vmm adds console=ttyS0, panic=-1,
                          reboot=acpi and 8250.nr_uarts=1 unless the same keys are given
  --config FILE.json      Firecracker-like JSON: {"boot-source": {"kernel_image_path",
                          "initrd_path", "boot_args"}, "machine-config": {"vcpu_count",
                          "mem_size_mib"}, "console": "stdio", "virtio-console": "file:P",
                          "virtio-blk": ["disk.img"], "net": [{"mac", "overlay", "mtu", ...}],
                          "shm": ["name=..,size=.."]};
                          command-line flags override it (--net adds NICs)
  --console SPEC          serial console (COM1): stdio (default), none, file:PATH, socket:PATH
                          (stdio on a tty is raw; Ctrl-A x quits)
  --virtio-console SPEC   a virtio-console (hvc0): file:PATH, socket:PATH, stdio
  --virtio-blk PATH | path=PATH[,ro][,sched=fifo|as|as-anon][,model=hdd][,window_ms=N]
                          a virtio-blk disk backed by PATH (repeatable); sched: requests
                          served by an I/O thread in that order (anticipatory by inferred
                          process, or without identity), model=hdd: paced like a 7200 rpm
                          disk (doc/disk.md); default: served at once on the vCPU
  --net mac=MAC[,overlay=FILE][,mtu=N][,offload=on|off][,tx=thread|vcpu]
                          a virtio-net NIC (repeatable; eth0, eth1, ...) on the overlay switch
                          configured by FILE (JSON, doc/net.md: listen, peers, routes, ...);
                          NICs naming the same FILE share one switch, NICs without one share
                          a local-only switch; mtu (68..9000) is offered to the guest;
                          offload=off (no checksum/TSO offload) and tx=vcpu (transmit on the
                          kicking vCPU) are for side-by-side measurements
  --shm name=NAME,size=SIZE[,path=FILE]
                          memory shared with every VM on this host naming the same FILE
                          (default /dev/shm/gears-shm-NAME; SIZE a multiple of 2M): a
                          guest-physical range above RAM, ACPI device GEAR0001 with _UID NAME
                          (doc/shm.md); repeatable, at most 16
  --kvm-device PATH       KVM device (default /dev/kvm)
  --force-pvm             run even on a paravirtual (kvm_pvm) /dev/kvm
  --help                  this text

Exit codes:
  0   guest powered off (ACPI S5, e.g. `poweroff`)
  1   gears-vmm error (bad option, missing file, KVM failure, vCPU error)
  2   guest rebooted (ACPI reset)
  3   guest triple fault
  4   guest kernel panic (seen on the console, followed by the panic=-1 reset)
  5   stopped from the host (Ctrl-A x, SIGINT/SIGTERM)
)";
}

}  // namespace gears::vmm::config
