#include "builder.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "acpi/tables.h"
#include "devices/acpi_power.h"
#include "devices/serial_16550.h"
#include "x86/boot_params.h"
#include "x86/bzimage.h"
#include "x86/cpuid.h"
#include "x86/layout.h"
#include "x86/regs.h"
#include "x86/reset_stub.h"

#if defined(GEARS_VMM_HAVE_VIRTIO)
#include "virtio/console.h"
#include "virtio/mmio_transport.h"
#include "virtio/net.h"
#endif
#if defined(GEARS_VMM_HAVE_VIRTIO_BLK)
#include "virtio/blk.h"
#endif

namespace gears::vmm {

int exit_code(StopReason r) {
  switch (r) {
    case StopReason::PowerOff: return 0;
    case StopReason::Reboot: return 2;
    case StopReason::TripleFault: return 3;
    case StopReason::Panic: return 4;
    case StopReason::HostRequest: return 5;
    case StopReason::Error:
    case StopReason::Running: break;
  }
  return 1;
}

const char* describe(StopReason r) {
  switch (r) {
    case StopReason::PowerOff: return "guest powered off";
    case StopReason::Reboot: return "guest rebooted";
    case StopReason::TripleFault: return "guest triple fault";
    case StopReason::Panic: return "guest kernel panic";
    case StopReason::HostRequest: return "stopped from the host";
    case StopReason::Error: return "error";
    case StopReason::Running: break;
  }
  return "running";
}

Machine::~Machine() {
  vcpus_.clear();
  vm_.reset();
  for (int fd : owned_fds_) ::close(fd);
}

Expected<std::unique_ptr<Machine>> Machine::build(const config::VmConfig& cfg) {
  // 1. Inputs first: a bad file is reported the same with or without KVM.
  GEARS_TRY(config::validate(cfg, 0));
  auto kernel = x86::load_bzimage(cfg.kernel);
  if (!kernel) return fail(kernel.error());
  std::vector<uint8_t> initrd;
  if (!cfg.initrd.empty()) {
    auto f = x86::read_file(cfg.initrd, "initrd");
    if (!f) return fail(f.error());
    initrd = std::move(*f);
    if (initrd.size() >= cfg.mem_bytes)
      return fail("initrd (" + std::to_string(initrd.size() >> 20) + " MiB) is larger than guest memory (" +
                  std::to_string(cfg.mem_bytes >> 20) + " MiB): raise --mem");
  }

  std::unique_ptr<Machine> m(new Machine());
  // 2. KVM and the VM.
  auto kvm = KvmSystem::open(cfg.kvm_device, cfg.force_pvm);
  if (!kvm) return fail(kvm.error());
  m->kvm_ = std::move(*kvm);
  GEARS_TRY(config::validate(cfg, m->kvm_.max_vcpus()));
  auto mem = GuestMemory::create(cfg.mem_bytes);
  if (!mem) return fail(mem.error());
  m->mem_ = std::move(*mem);
  auto vm = Vm::create(m->kvm_, m->mem_);
  if (!vm) return fail(vm.error());
  m->vm_ = std::move(*vm);

  // 3. Devices, then the ACPI tables that describe them.
  std::vector<uint64_t> mmio_bases;
  GEARS_TRY(m->add_devices(cfg, mmio_bases));
  acpi::Config acfg{x86::kAcpiAddr, cfg.vcpus, {}};
  GEARS_TRY(m->attach_shared_regions(cfg, acfg.shared_regions));
  for (size_t i = 0; i < mmio_bases.size(); ++i)
    acfg.virtio_mmio.push_back({mmio_bases[i], static_cast<uint32_t>(x86::kVirtioMmioSize), x86::kVirtioFirstGsi + static_cast<uint32_t>(i)});
  acpi::Tables tables = acpi::build_tables(acfg);
  if (tables.blob.size() > x86::kAcpiMax) return fail("ACPI tables too large");
  GEARS_TRY(m->mem_.write(x86::kAcpiAddr, tables.blob));

  // 4. Kernel, command line, initrd, zero page.
  GEARS_TRY(x86::write_reset_stub(m->mem_));
  auto boot = x86::setup_boot(m->mem_, *kernel, config::kernel_cmdline(cfg), initrd, tables.rsdp_addr);
  if (!boot) return fail(boot.error());

  // 5. vCPUs: CPUID per vCPU, registers on the BSP only (APs wait for INIT/SIPI).
  auto supported = m->kvm_.supported_cpuid();
  if (!supported) return fail(supported.error());
  for (uint32_t i = 0; i < cfg.vcpus; ++i) {
    auto v = Vcpu::create(*m->vm_, static_cast<int>(i), m->control_);
    if (!v) return fail(v.error());
    GEARS_TRY((*v)->set_cpuid(x86::cpuid_for_vcpu(*supported, i, cfg.vcpus)));
    m->vcpus_.push_back(std::move(*v));
  }
  GEARS_TRY(x86::setup_boot_cpu(m->mem_, *m->vcpus_[0]));
  Machine* raw = m.get();
  m->control_.set_on_stop([raw] {
    for (auto& v : raw->vcpus_) v->kick();
  });
  return m;
}

Expected<void> Machine::add_devices(const config::VmConfig& cfg, std::vector<uint64_t>& mmio_bases) {
  auto console = devices::Console::open(cfg.console, control_);
  if (!console) return fail(console.error());
  console_ = std::move(*console);
  devices::Console* con = console_.get();
  auto serial = std::make_shared<devices::Serial16550>(vm_->irq_line(devices::Serial16550::kCom1Gsi),
                                                      [con](uint8_t c) { con->output(c); });
  GEARS_TRY(vm_->pio().add(devices::Serial16550::kCom1Port, devices::Serial16550::kPortCount, serial));
  console_->start_input([serial](std::span<const uint8_t> b) { serial->push_input(b); });
  GEARS_TRY(vm_->pio().add(x86::kAcpiSleepControlPort, devices::AcpiPower::kPortCount,
                           std::make_shared<devices::AcpiPower>(control_)));

  auto next_window = [&]() {
    uint64_t base = x86::kVirtioMmioBase + mmio_bases.size() * x86::kVirtioMmioStride;
    uint32_t gsi = x86::kVirtioFirstGsi + static_cast<uint32_t>(mmio_bases.size());
    mmio_bases.push_back(base);
    return std::pair{base, gsi};
  };
  (void)next_window;
#if defined(GEARS_VMM_HAVE_VIRTIO)
  if (cfg.virtio_console) {
    const devices::ConsoleSpec& s = *cfg.virtio_console;
    int out_fd = -1, in_fd = -1;
    switch (s.kind) {
      case devices::ConsoleSpec::Kind::Stdio: out_fd = STDOUT_FILENO; in_fd = -1; break;
      case devices::ConsoleSpec::Kind::File:
        out_fd = ::open(s.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd < 0) return fail_errno("virtio-console file " + s.path);
        owned_fds_.push_back(out_fd);
        break;
      case devices::ConsoleSpec::Kind::Socket: return fail("--virtio-console socket: is not supported yet (use file:PATH)");
      case devices::ConsoleSpec::Kind::None: break;
    }
    auto [base, gsi] = next_window();
    auto dev = std::make_shared<virtio::VirtioMmioTransport>(mem_, vm_->irq_line(gsi), virtio::make_virtio_console(out_fd, in_fd));
    GEARS_TRY(vm_->mmio().add(base, x86::kVirtioMmioSize, dev));
  }
#else
  if (cfg.virtio_console) return fail("this gears-vmm was built without virtio devices (--virtio-console)");
#endif
#if defined(GEARS_VMM_HAVE_VIRTIO_BLK)
  for (const auto& text : cfg.virtio_blk) {
    auto spec = virtio::parse_blk_spec(text);
    if (!spec) return fail(spec.error());
    // The issuer of a scheduled request: the address space the kicking vCPU ran in, and the
    // process behind it where processes are tracked.
    spec->options.issuer = [resolve = process_resolver_] {
      Vcpu* v = Vcpu::current();
      auto as = v ? v->address_space() : Expected<uint64_t>(0);
      const uint64_t root = as ? *as : 0;
      const uint64_t process = root && *resolve ? (*resolve)(root) : 0;
      return disk::Issuer{process ? (disk::kIssuerIsProcess | process) : root, root};
    };
    auto blk = virtio::make_virtio_blk(spec->path, spec->options);
    if (!blk) return fail(blk.error());
    disks_.push_back({spec->path, blk->get()});
    auto [base, gsi] = next_window();
    auto dev = std::make_shared<virtio::VirtioMmioTransport>(mem_, vm_->irq_line(gsi), std::move(*blk));
    GEARS_TRY(vm_->mmio().add(base, x86::kVirtioMmioSize, dev));
  }
#else
  if (!cfg.virtio_blk.empty()) return fail("this gears-vmm was built without virtio-blk (--virtio-blk)");
#endif
#if defined(GEARS_VMM_HAVE_VIRTIO)
  for (size_t i = 0; i < cfg.nics.size(); ++i) {
    const net::NicSpec& spec = cfg.nics[i];
    auto sw = switch_for(cfg, spec.overlay);
    if (!sw) return fail(sw.error());
    const uint32_t sw_mtu = (*sw)->options().mtu;
    if (spec.mtu > sw_mtu)
      return fail("--net mtu=" + std::to_string(spec.mtu) + " exceeds the overlay's mtu " + std::to_string(sw_mtu) + " (" + spec.overlay + ")");
    virtio::VirtioNetOptions opts;
    // An overlay with a non-standard MTU is offered to the guest unless the NIC names its own.
    opts.mtu = spec.mtu;
    opts.offloads = spec.offloads;
    opts.tx_thread = spec.tx_thread;
    if (opts.mtu == 0 && !spec.overlay.empty() && sw_mtu != GEARS_OVERLAY_DEFAULT_MTU) opts.mtu = static_cast<uint16_t>(sw_mtu);
    const std::string name = "net" + std::to_string(i);
    std::shared_ptr<net::Port> port = (*sw)->add_port(name);
    auto nic = virtio::make_virtio_net(port, spec.mac, opts);
    virtio::VirtioNetDevice* raw = nic.get();
    auto [base, gsi] = next_window();
    auto dev = std::make_shared<virtio::VirtioMmioTransport>(mem_, vm_->irq_line(gsi), std::move(nic));
    GEARS_TRY(vm_->mmio().add(base, x86::kVirtioMmioSize, dev));
    nics_.push_back({name, spec.mac, spec.overlay, opts.mtu, raw, *sw, std::move(port)});
  }
#else
  if (!cfg.nics.empty()) return fail("this gears-vmm was built without virtio devices (--net)");
#endif
  return {};
}

Expected<void> Machine::attach_shared_regions(const config::VmConfig& cfg, std::vector<acpi::SharedRegionDevice>& acpi_out) {
  uint64_t ram_end = 0;
  for (const MemoryRegion& r : mem_.regions()) ram_end = std::max(ram_end, r.gpa + r.size);
  uint64_t gpa = x86::shared_region_base(ram_end);
  for (const shm::RegionSpec& spec : cfg.shared_regions) {
    auto region = shm::SharedRegion::attach(spec);
    if (!region) return fail(region.error());
    GEARS_TRY(vm_->add_memory_slot(gpa, spec.size, (*region)->host()));
    // The region works without a place in its group (services then get no VmGroup).
    auto group = shm::VmGroupMember::join(**region, mem_.fd(), mem_.size());
    if (!group) std::fprintf(stderr, "gears-vmm: %s\n", group.error().what().c_str());
    acpi_out.push_back({spec.name, gpa, spec.size});
    shared_regions_.push_back({std::move(*region), gpa, group ? std::move(*group) : nullptr});
    gpa += spec.size;
  }
  return {};
}

Expected<std::shared_ptr<net::Switch>> Machine::switch_for(const config::VmConfig& cfg, const std::string& overlay) {
  for (const auto& s : switches_)
    if (s.overlay == overlay) return s.sw;
  std::shared_ptr<net::Switch> sw;
  if (overlay.empty()) {
    // Local-only: frames between this gears-vmm's NICs; large enough for the largest NIC MTU.
    net::Switch::Options o;
    for (const auto& n : cfg.nics)
      if (n.overlay.empty() && n.mtu > o.mtu) o.mtu = n.mtu;
    auto s = net::Switch::create(o, nullptr);
    if (!s) return fail(s.error());
    sw = std::move(*s);
  } else {
    auto oc = net::load_overlay_config(overlay);
    if (!oc) return fail("--net: " + oc.error().what());
    auto s = net::make_overlay(*oc);
    if (!s) return fail("--net overlay=" + overlay + ": " + s.error().what());
    sw = std::move(*s);
  }
  switches_.push_back({overlay, sw});
  return sw;
}

StopReason Machine::run() {
  for (auto& v : vcpus_) v->start();
  StopReason r = control_.wait();
  for (auto& v : vcpus_) v->kick();
  for (auto& v : vcpus_) v->join();
  return r;
}

}  // namespace gears::vmm
