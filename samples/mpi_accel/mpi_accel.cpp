// mpi-accel: the MPI accelerator (doc/mpi-accel.md). Open MPI ranks in co-located VMs move
// their messages through memory gears-vmm shares between the VMs (--shm name=mpi), with no VM
// exit on the data path.
//
// - guest_kernel: finds this VM's shared region "mpi" and exposes it to the ranks as
//                 /dev/gears-mpi (mmap); tells the VMM half.
// - guest_user:   the Open MPI BTL component `gears` (samples/mpi_accel/btl/, C, linked into
//                 the user half with gears_add_service's USER_LINK_LIBRARIES) maps
//                 /dev/gears-mpi and carries point-to-point traffic (and so collectives and
//                 one-sided, through ob1) between ranks that share the region; ranks elsewhere
//                 keep Open MPI's own paths (tcp, vader).
//                 Large messages: one copy by the VMM from the sender VM's RAM into the
//                 receiver's (ob1's RDMA get; /dev/gears-mpi-rdma, kernel/rdma_dev.c).
// - vmm:          the control plane: which region this VM shares, what the guest did with it,
//                 and the one-copy path's registrations and copies (rdma_vmm.h).
#include <gears/kernel.h>
#include <gears/service.h>
#include <gears/vmm/service_host.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "rdma_vmm.h"

GEARS_SERVICE("mpi-accel", "0.1");
// The user half is Open MPI's `gears` BTL: installed where the guest's Open MPI (Debian's 4.1,
// as in the guest image) finds its components; every MPI process started after the deploy
// loads it, none is preloaded. Undeploy removes the file (running processes keep their copy).
GEARS_USER_HALF_INSTALL("/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_btl_gears.so");

// The one-copy path's device (kernel/rdma_dev.c, C with Linux's headers). Declared here, not in
// a shared header: gearsc accepts a kernel half's calls only to functions the service's own
// source declares (the same declarations head rdma_dev.c).
extern "C" {
int mpi_rdma_start(long (*reg)(unsigned long long, unsigned long long, unsigned long long, unsigned long long),
                   long (*dereg)(unsigned long long, unsigned long long),
                   long (*get)(unsigned long long, unsigned long long, unsigned long long, unsigned long long,
                               unsigned long long),
                   long member);
void mpi_rdma_stop(void);
}

// ---------------------------------------------------------------- VMM half
static gears::vmm::ServiceHost* service_host;
static mpi_rdma::VmmSide* rdma;  // null: no one-copy path in this VM

static std::string hex(uint64_t v) {
  char b[24];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}

// Refuses the service in a VM that shares no region "mpi" (gears-vmm --shm name=mpi,...): the
// deploy fails at once with a clear line instead of in the guest kernel.
[[gears::vmm, gears::on_load]] int start(gears::vmm::ServiceHost& host) {
  service_host = &host;
  auto region = host.shared_region("mpi");
  if (!region) {
    host.log("refused: " + region.error().what());
    return 1;
  }
  host.log("started: region mpi is " + std::to_string(region->size() >> 20) + " MiB");
  // One copy between the VMs of the group: without it large messages take the ring (2 copies).
  static mpi_rdma::VmmSide the_rdma;  // outlives every hypercall (plugin lifetime)
  auto group = host.vm_group("mpi");
  const std::string why = group ? the_rdma.attach(*group, [&host](uint64_t gpa, uint64_t len) {
    return host.guest_physical(gpa, len);
  })
                                : group.error().what();
  if (why.empty()) {
    rdma = &the_rdma;
    host.log("one-copy path on: this VM is member " + std::to_string((*group)->self()) + " of the group");
    if (auto r = host.add_counters([] { return rdma->counters(); }); !r) host.log("no counters: " + r.error().what());
  } else {
    host.log("one-copy path off: " + why);
  }
  return 0;
}

// The one-copy path's hypercalls: from the guest kernel only (a process reaches them through
// /dev/gears-mpi-rdma, which pins its pages first).
static bool from_guest_kernel() {
  auto* g = gears::vmm::current_guest();
  return rdma && g && g->origin() == gears::vmm::Origin::guest_kernel;
}
[[gears::vmm]] int64_t rdma_member() { return from_guest_kernel() ? rdma->member() : -19; }
[[gears::vmm]] int64_t rdma_register(uint64_t list_gpa, uint64_t count, uint64_t len, uint64_t cookie_gpa) {
  return from_guest_kernel() ? rdma->reg(list_gpa, count, len, cookie_gpa) : -1;
}
[[gears::vmm]] int64_t rdma_deregister(uint64_t key, uint64_t cookie) {
  return from_guest_kernel() ? rdma->dereg(key, cookie) : -1;
}
[[gears::vmm]] int64_t rdma_get(uint64_t member_key, uint64_t cookie, uint64_t offset, uint64_t list_gpa, uint64_t count) {
  return from_guest_kernel() ? rdma->get(member_key, cookie, offset, list_gpa, count) : -1;
}

// The guest kernel exposed (result 0) or failed to expose (a negative errno) the region.
[[gears::vmm]] int region_exposed(int64_t result, uint64_t gpa, uint64_t size) {
  if (!service_host) return 0;
  if (result == 0)
    service_host->log("region mpi (" + std::to_string(size >> 20) + " MiB at guest-physical " + hex(gpa) +
                      ") is /dev/gears-mpi in the guest");
  else
    service_host->log("the guest kernel could not expose region mpi: error " + std::to_string(result));
  return 0;
}

// ---------------------------------------------------------------- guest-kernel half
[[gears::guest_kernel]] long reg_vmm(unsigned long long list, unsigned long long count, unsigned long long len,
                                     unsigned long long cookie) {
  return rdma_register(list, count, len, cookie);
}
[[gears::guest_kernel]] long dereg_vmm(unsigned long long key, unsigned long long cookie) {
  return rdma_deregister(key, cookie);
}
[[gears::guest_kernel]] long get_vmm(unsigned long long member_key, unsigned long long cookie, unsigned long long offset,
                                     unsigned long long list, unsigned long long count) {
  return rdma_get(member_key, cookie, offset, list, count);
}

[[gears::guest_kernel, gears::on_load]] int expose_region() {
  gears::kernel::SharedRegion r;
  int err = gears::kernel::shared_region("mpi", r);
  if (err == 0) err = gears::kernel::expose_shared_region("mpi");
  region_exposed(err, r.gpa, r.size);
  if (err) {
    gears::kernel::log("no shared region 'mpi' (start gears-vmm with --shm name=mpi,size=...): error", static_cast<unsigned long long>(-err));
    return err;
  }
  // Without the one-copy path (its VMM side is off) the ring carries every message.
  const long member = rdma_member();
  const int rdma_err = member < 0 ? static_cast<int>(member) : mpi_rdma_start(&reg_vmm, &dereg_vmm, &get_vmm, member);
  if (rdma_err) gears::kernel::log("mpi-accel: no /dev/gears-mpi-rdma: error", static_cast<unsigned long long>(-rdma_err));
  return 0;
}

[[gears::guest_kernel, gears::on_unload]] void unload() { mpi_rdma_stop(); }
