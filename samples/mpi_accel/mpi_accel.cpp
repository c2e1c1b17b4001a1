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
// - vmm:          the control plane: which region this VM shares, what the guest did with it.
#include <gears/kernel.h>
#include <gears/service.h>
#include <gears/vmm/service_host.h>

#include <cstdint>
#include <cstdio>
#include <string>

GEARS_SERVICE("mpi-accel", "0.1");
// The user half is Open MPI's `gears` BTL: installed where the guest's Open MPI (Debian's 4.1,
// as in the guest image) finds its components; every MPI process started after the deploy
// loads it, none is preloaded. Undeploy removes the file (running processes keep their copy).
GEARS_USER_HALF_INSTALL("/usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3/mca_btl_gears.so");

// ---------------------------------------------------------------- VMM half
static gears::vmm::ServiceHost* service_host;

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
  return 0;
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
[[gears::guest_kernel, gears::on_load]] int expose_region() {
  gears::kernel::SharedRegion r;
  int err = gears::kernel::shared_region("mpi", r);
  if (err == 0) err = gears::kernel::expose_shared_region("mpi");
  region_exposed(err, r.gpa, r.size);
  if (err) gears::kernel::log("no shared region 'mpi' (start gears-vmm with --shm name=mpi,size=...): error", static_cast<unsigned long long>(-err));
  return err;
}
