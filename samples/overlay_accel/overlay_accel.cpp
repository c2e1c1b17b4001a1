// overlay-accel: the overlay accelerator (doc/overlay-accel.md). The overlay's data plane for
// frames to peer hosts moves into the guest kernel; the control plane (routes, MAC learning,
// peers) stays in the VMM's overlay switch (doc/net.md), VNET/P's split as GEARS drew it.
//
// - guest_kernel: allocates the shared area (ovl_shared.h), announces it, wraps eth0's transmit
//                 (kernel/ovl_netdev.c): a unicast frame for a MAC at a peer host is
//                 encapsulated in the guest and pushed into the TX ring (a frame with offload
//                 state, e.g. a 64 KiB TSO frame, goes whole: the host segments it), with no
//                 VM exit while the VMM's poller is awake and one per batch when it sleeps;
//                 other frames take the NIC as before.
//                 Receive: while the guest polls (NAPI, started by its own traffic), frames
//                 for it land in the RX ring instead of the NIC (no interrupt, no exit).
// - vmm:          the control plane's side (ovl_vmm.h): fills the area's control page (NIC,
//                 overlay id, MTU, remote MACs; republished when the switch's table changes),
//                 a poller that drains the TX ring into the overlay's host path (the switch
//                 checks each packet as if it came from a peer, and sends it as is), and the
//                 NIC's receive tap that fills the RX ring while the guest polls.
// Undeploy gives the NIC its transmit back, sends what is left in the ring, frees the area.
#include <gears/kernel.h>
#include <gears/service.h>
#include <gears/vmm/service_host.h>

#include <cstdint>
#include <string>

#include "ovl_vmm.h"

GEARS_SERVICE("overlay-accel", "0.1");

// The guest-kernel packet path (kernel/ovl_netdev.c, C with Linux's headers).
extern "C" {
// `kick`, `rx_stop`: how the packet path calls the VMM half (hypercall stubs of this half).
int ovl_k_setup(unsigned long long* gpa, unsigned long long* size, long (*kick)(long full), long (*rx_stop)(void));
int ovl_k_hook(void);
void ovl_k_unhook(void);
void ovl_k_free(void);
}

// ---------------------------------------------------------------- VMM half
static gears::vmm::ServiceHost* service_host;
static gears::vmm::OverlayNic* nic;
static gears::vmm::Poller* poller;
static ovl::VmmSide* side;

// Refuses a VM whose first NIC is not on an overlay with peers: nothing would ever be remote.
[[gears::vmm, gears::on_load]] int start(gears::vmm::ServiceHost& host) {
  service_host = &host;
  auto n = host.overlay_nic(0);
  if (!n) {
    host.log("refused: " + n.error().what());
    return 1;
  }
  if (!(*n)->info().has_peers) {
    host.log("refused: NIC " + (*n)->info().name + " is on a local-only switch (gears-vmm --net ...,overlay=FILE)");
    return 1;
  }
  nic = *n;
  static ovl::VmmSide the_side;  // outlives every poller round and hypercall (plugin lifetime)
  side = &the_side;
  auto p = host.start_poller("tx", [] { return side->poll(); }, std::chrono::milliseconds(20));
  if (!p) {
    host.log("refused: " + p.error().what());
    return 1;
  }
  poller = *p;
  if (auto r = host.add_counters([] { return side->counters(); }); !r) host.log("no counters: " + r.error().what());
  // Frames for the guest go into its receive ring while it polls (gears-vmm removes the tap at
  // undeploy; without an attached area it declines every frame).
  nic->set_rx_tap([](std::span<const uint8_t> frame) { return side->rx_tap(frame); });
  host.log("started on " + nic->info().name + " (overlay network " + std::to_string(nic->info().network) + ")");
  return 0;
}

// The guest's area at guest-physical [gpa, gpa + size): 0 or a negative errno.
[[gears::vmm]] int64_t attach(uint64_t gpa, uint64_t size) {
  if (!side) return -19;  // ENODEV
  auto area = service_host->guest_physical(gpa, size);
  if (!area) {
    service_host->log("attach refused: " + area.error().what());
    return -14;  // EFAULT
  }
  const int rc = side->attach(*area, nic);
  if (rc == 0) {
    service_host->log("guest ring attached");
    poller->wake();
  } else {
    service_host->log("attach refused: error " + std::to_string(rc));
  }
  return rc;
}

// The guest is about to free the area: send what is left, stop reading it.
[[gears::vmm]] int64_t detach() {
  if (!side) return -19;
  side->detach();
  service_host->log("guest ring detached");
  return 0;
}

// The guest pushed a batch while the poller slept: wake it (the vCPU returns at once). `full`:
// the ring is full, send now on this vCPU, so the guest finds room when this returns.
[[gears::vmm]] int64_t tx_kick(uint64_t full) {
  if (!side) return -19;
  if (full)
    side->kick();
  else
    side->wake();
  poller->wake();
  return 0;
}

// The guest's receive poller goes idle: frames take the NIC again. Returns the frames still in
// the ring (the guest polls on while there are any).
[[gears::vmm]] int64_t rx_idle() {
  if (!side) return 0;
  return side->rx_stop();
}

// ---------------------------------------------------------------- guest-kernel half
[[gears::guest_kernel]] long kick_vmm(long full) { return tx_kick(full != 0); }
[[gears::guest_kernel]] long rx_stop_vmm() { return rx_idle(); }

[[gears::guest_kernel, gears::on_load]] int load() {
  unsigned long long gpa = 0, size = 0;
  int err = ovl_k_setup(&gpa, &size, &kick_vmm, &rx_stop_vmm);
  if (err) return err;
  const int64_t rc = attach(gpa, size);
  if (rc != 0) {
    ovl_k_free();
    gears::kernel::log("overlay-accel: the VMM half refused the ring: error", static_cast<unsigned long long>(-rc));
    return rc < 0 ? static_cast<int>(rc) : -22;
  }
  err = ovl_k_hook();
  if (err) {
    detach();
    ovl_k_free();
  }
  return err;
}

[[gears::guest_kernel, gears::on_unload]] void unload() {
  ovl_k_unhook();
  detach();
  ovl_k_free();
}
