// virtio-net (device id 1): one receive and one transmit queue, attached to a net::Port of the
// overlay switch (host-vmm/net/). Offers MAC and STATUS (link always up), and MTU when asked
// to; no checksum or segmentation offloads and no mergeable receive buffers, so every frame is
// one chain each way behind a 12-byte virtio_net_hdr_v1 that carries nothing.
//
// Transmit runs on the notifying vCPU: each chain is checked (header fields, frame length),
// copied out of guest RAM and sent to the port; malformed chains are counted and returned.
// Receive runs on whichever thread the switch delivers from: a frame goes straight into a
// posted buffer, or waits in a bounded queue until the driver posts one; beyond the bound,
// and while the driver is not running, frames are counted and dropped.
#pragma once

#include <cstdint>
#include <memory>

#include "net/address.h"
#include "net/port.h"
#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

struct VirtioNetOptions {
  uint16_t mtu = 0;                // 0: not advertised (the guest uses 1500)
  size_t rx_pending_max = 256;     // frames held while the guest has no receive buffer
};

struct VirtioNetStats {
  uint64_t tx_frames = 0, tx_bytes = 0;
  uint64_t tx_malformed = 0;       // bad header, frame too short or too long
  uint64_t rx_frames = 0, rx_bytes = 0;
  uint64_t rx_dropped_full = 0;    // no receive buffer and the pending queue full
  uint64_t rx_dropped_small = 0;   // the posted buffer cannot hold the frame
  uint64_t rx_dropped_inactive = 0;  // the driver is not running (before DRIVER_OK, after reset)
  uint64_t rx_pending = 0;         // frames waiting for buffers now
};

class VirtioNetDevice : public VirtioDevice {
 public:
  virtual VirtioNetStats stats() const = 0;
};

// The device attaches itself as the port's receiver and detaches in its destructor.
std::unique_ptr<VirtioNetDevice> make_virtio_net(std::shared_ptr<net::Port> port,
                                                 const net::MacAddress& mac,
                                                 VirtioNetOptions opts = {});

}  // namespace gears::vmm::virtio
