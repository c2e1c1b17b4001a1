// virtio-blk (device id 2) backed by a file or block device: IN, OUT, FLUSH and GET_ID,
// served synchronously with preadv/pwritev straight into guest RAM on the notifying vCPU.
#pragma once

#include <memory>
#include <string>

#include "gears/expected.h"
#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

// Capacity is the file size in 512-byte sectors (a partial last sector is not exposed).
// `read_only` opens the file O_RDONLY and offers VIRTIO_BLK_F_RO; writes then fail with IOERR.
Expected<std::unique_ptr<VirtioDevice>> make_virtio_blk(const std::string& path, bool read_only);

}  // namespace gears::vmm::virtio
