// virtio-net (device id 1): one receive and one transmit queue, attached to a net::Port of the
// overlay switch (host-vmm/net/). Offers MAC and STATUS (link always up), MTU when asked to,
// checksum offload both ways (CSUM, GUEST_CSUM), TCP segmentation offload both ways
// (HOST_TSO4/6 + HOST_ECN, GUEST_TSO4/6 + GUEST_ECN) and mergeable receive buffers
// (MRG_RXBUF); the transport adds EVENT_IDX. Every frame travels behind a 12-byte
// virtio_net_hdr_v1 (virtio/net_hdr.h).
//
// Transmit runs on a thread of the device (or, with tx_thread off, on the notifying vCPU): a
// kick only wakes it, and it drains the queue with the driver's notifications suppressed, so a
// guest that keeps the ring busy adds frames without exiting (kicks << frames; vhost-net does
// the same). Each chain's header is checked against the frame and the negotiated features
// (untrusted: net/gso.h check_offload), the frame copied out of guest RAM and sent to the port
// with its offload state; malformed chains are counted and returned.
// Receive runs on whichever thread the switch delivers from: what the guest did not negotiate
// is resolved first (checksum completed, GSO frame segmented: net::resolve), then each frame
// goes into posted buffers or waits in a bounded queue until the driver posts some
// (virtio/net_rx.h); beyond the bound, and while the driver is not running, frames are counted
// and dropped.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "net/address.h"
#include "net/port.h"
#include "virtio/virtio_device.h"

namespace gears::vmm::virtio {

struct VirtioNetOptions {
  uint16_t mtu = 0;                // 0: not advertised (the guest uses 1500)
  size_t rx_pending_max = 256;     // frames held while the guest has no receive buffer ...
  size_t rx_pending_bytes_max = 4 << 20;  // ... and their bytes at most
  bool offloads = true;            // offer CSUM/TSO/MRG_RXBUF (off: plain frames only, for A/B runs)
  bool tx_thread = true;           // transmit off the vCPU (off: inline on the kick, for A/B runs)
};

struct VirtioNetStats {
  uint64_t tx_frames = 0, tx_bytes = 0;
  uint64_t tx_malformed = 0;       // dropped: bad header, frame too short or too long (all causes)
  uint64_t tx_bad_csum = 0;        // ... of which: NEEDS_CSUM not negotiated or outside the frame
  uint64_t tx_bad_gso = 0;         // ... of which: a GSO header not negotiated or not matching the frame
  uint64_t tx_csum = 0;            // frames sent with a partial checksum (NEEDS_CSUM)
  uint64_t tx_gso = 0;             // GSO frames sent (up to 64 KiB each)
  uint64_t rx_frames = 0, rx_bytes = 0;  // frames put into receive buffers
  uint64_t rx_gso = 0;             // ... of which GSO frames delivered whole (GUEST_TSO)
  uint64_t rx_merged = 0;          // ... of which spanning several buffers (MRG_RXBUF)
  uint64_t rx_segmented = 0;       // GSO frames segmented here (the guest lacks GUEST_TSO)
  uint64_t rx_csum_completed = 0;  // partial checksums completed here (the guest lacks GUEST_CSUM)
  uint64_t rx_dropped_malformed = 0; // offload fields that do not match the frame
  uint64_t rx_dropped_full = 0;    // no receive buffer and the pending queue full
  uint64_t rx_dropped_small = 0;   // the posted buffer(s) cannot hold the frame
  uint64_t rx_dropped_inactive = 0;  // the driver is not running (before DRIVER_OK, after reset)
  uint64_t rx_pending = 0;         // frames waiting for buffers now
  // Notifications each way (EVENT_IDX suppression at work): driver kicks per queue, used-buffer
  // interrupts raised per queue.
  uint64_t tx_kicks = 0, rx_kicks = 0, tx_interrupts = 0, rx_interrupts = 0;
  uint64_t tx_passes = 0;          // transmit drains (each ends with notifications re-armed)

  // Every counter by name, for the control socket's "stats".
  std::vector<std::pair<std::string_view, uint64_t>> named() const;
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
