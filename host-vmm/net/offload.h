// What travels with a frame besides its bytes: the offload state of virtio_net_hdr (virtio
// spec 5.1.6), in host byte order. A plain frame (every field at its default) has complete
// checksums and is one packet on the wire.
//
// A frame with offload state is either delivered as it is to a destination that can take it (a
// local guest NIC that negotiated GUEST_CSUM / GUEST_TSO), or resolved first (net/gso.h: the
// checksum completed, the large segment cut into MTU-sized ones) for one that cannot (a peer
// host over the overlay, a NIC that did not negotiate the offload).
#pragma once

#include <cstddef>
#include <cstdint>

namespace gears::vmm::net {

// The segmentation offloads gears implements (VIRTIO_NET_HDR_GSO_TCPV4 / _TCPV6).
enum class Gso : uint8_t { kNone, kTcpV4, kTcpV6 };

struct Offload {
  // NEEDS_CSUM: the 16-bit field at csum_start + csum_offset holds the pseudo-header sum; the
  // RFC 1071 sum over [csum_start, end of frame) is still to be folded in and stored there.
  bool needs_csum = false;
  // DATA_VALID: the VMM computed (or checked) the checksums itself. Never taken from a guest.
  bool data_valid = false;
  uint16_t csum_start = 0;
  uint16_t csum_offset = 0;
  Gso gso = Gso::kNone;
  bool gso_ecn = false;   // VIRTIO_NET_HDR_GSO_ECN: the segment carries CWR (first segment only)
  uint16_t gso_size = 0;  // TCP payload bytes per segment (the MSS)
  uint16_t hdr_len = 0;   // Ethernet + IP + TCP header bytes (from a guest: a hint only)

  bool is_gso() const { return gso != Gso::kNone; }
  bool plain() const { return !needs_csum && !is_gso(); }
};

// The largest GSO frame: a 65535-byte IP packet behind an Ethernet header and one 802.1Q tag.
inline constexpr size_t kMaxGsoFrame = 65535 + 18;

}  // namespace gears::vmm::net
