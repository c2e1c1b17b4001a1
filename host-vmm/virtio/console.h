// virtio-console (device id 3): one port, no MULTIPORT. Guest output (transmitq) goes to
// `out_fd`; bytes read from `in_fd` (-1 = no input) fill the guest's receive buffers.
#pragma once

#include <memory>

#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

// The device keeps neither fd open beyond its life and never closes them: the caller owns both.
// Input is read by a small thread that the device starts and joins itself.
std::unique_ptr<VirtioDevice> make_virtio_console(int out_fd, int in_fd);

}  // namespace gears::vmm::virtio
