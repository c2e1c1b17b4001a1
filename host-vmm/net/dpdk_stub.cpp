// DpdkBackend in builds without DPDK (-DGEARS_WITH_DPDK=OFF, the default): configuration files
// that ask for it fail with a message saying so.
#include "net/dpdk_backend.h"

namespace gears::vmm::net {

bool DpdkBackend::available() { return false; }

Expected<std::shared_ptr<Backend>> DpdkBackend::open(const DpdkOptions&) {
  return fail("overlay: this gears-vmm was built without DPDK (configure with -DGEARS_WITH_DPDK=ON)");
}

}  // namespace gears::vmm::net
