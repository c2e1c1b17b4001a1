// What a VMM half sees of a guest NIC on the overlay (doc/net.md, doc/overlay-accel.md): the
// control plane's view (which MACs are at peer hosts, the overlay id, the MTU) and the host
// path for packets the guest half encapsulated itself. gears-vmm implements it on its switch;
// a service gets one from ServiceHost::overlay_nic().
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace gears::vmm {

using Mac = std::array<std::uint8_t, 6>;

struct OverlayNicInfo {
  std::string name;         // net0, net1, ... (eth0, eth1, ... in the guest)
  Mac mac{};                // the NIC's station address
  std::uint32_t network = 0;  // overlay id written into every header (gears/abi/overlay.h)
  std::uint32_t mtu = 0;      // largest payload; frames are at most mtu + 18 bytes
  bool has_peers = false;     // false: a local-only switch (nothing is ever remote)
};

// What send_encapsulated did with a packet.
enum class OverlaySend {
  sent,      // to the peer host its destination is routed to, as the guest built it
  switched,  // its destination is not (or no longer) at a peer: the frame went through the
             // switch as if the NIC had sent it (local guest, flood, ...)
  dropped,   // malformed (counted by the switch), or the host path failed (counted)
};

// Offload state of a frame a guest half hands over whole (virtio_net_hdr's fields, host byte
// order): the host path completes the checksum and cuts a TCP segmentation-offload frame into
// MTU-sized ones, exactly as for the NIC's own frames (doc/net.md "Offloads").
struct OverlayOffload {
  enum class Gso : std::uint8_t { none, tcpv4, tcpv6 };
  bool needs_csum = false;        // the field at csum_start + csum_offset holds the pseudo-header sum
  std::uint16_t csum_start = 0;
  std::uint16_t csum_offset = 0;
  Gso gso = Gso::none;
  bool gso_ecn = false;           // the segments carry CWR (first segment only)
  std::uint16_t gso_size = 0;     // TCP payload bytes per segment (the MSS)
  std::uint16_t hdr_len = 0;      // header bytes (a hint)
};

// A frame for the guest, offered to the service before the NIC's own receive path. Return
// true when the service took it (it then owns delivery), false to let the NIC receive it.
using OverlayRxTap = std::function<bool(std::span<const std::uint8_t> frame)>;

class OverlayNic {
 public:
  virtual ~OverlayNic() = default;
  virtual OverlayNicInfo info() const = 0;
  // Changes whenever the set of MACs at peers may have changed (route added or removed,
  // learned, moved, aged, a peer gone). Cheap: poll it.
  virtual std::uint64_t routes_generation() const = 0;
  // Unicast MACs the switch reaches at a peer host now (static routes and learned), at most
  // `max`, static routes first.
  virtual std::vector<Mac> remote_macs(std::size_t max) const = 0;
  // One packet the guest encapsulated (gears_overlay_hdr + frame). Untrusted: checked exactly
  // as a packet from a peer (magic, version, flags, network, lengths) and its frame as one from
  // the NIC (source address). The switch learns and looks up as for the NIC's own frames; a
  // destination at a peer gets the packet as it is (no second encapsulation).
  virtual OverlaySend send_encapsulated(std::span<const std::uint8_t> packet) = 0;
  // One Ethernet frame (up to 64 KiB with TCP segmentation offload) the guest half handed over
  // unencapsulated, with its offload state. Untrusted: checked exactly as the NIC's own frames
  // (length, source address, offload fields against the frame), then switched, resolved and
  // encapsulated as they are.
  virtual OverlaySend send_frame(std::span<const std::uint8_t> frame, const OverlayOffload& off) = 0;
  // Pushes out what the host path batched (after a burst of send_encapsulated).
  virtual void flush() = 0;
  // Frames for this NIC go to `tap` first (an empty function removes it). When this returns,
  // the previous tap is not running and will not be called again.
  virtual void set_rx_tap(OverlayRxTap tap) = 0;
};

}  // namespace gears::vmm
