// virtio-net's per-packet header and feature bits (virtio spec 5.1.3, 5.1.6), and their
// translation to and from the offload state that travels through the switch (net/offload.h).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "net/gso.h"
#include "net/offload.h"

namespace gears::vmm::virtio {

// Feature bits (spec 5.1.3).
inline constexpr unsigned kNetFCsum = 0;        // the driver may send partial checksums
inline constexpr unsigned kNetFGuestCsum = 1;   // the device may deliver partial/validated ones
inline constexpr unsigned kNetFMtu = 3;
inline constexpr unsigned kNetFMac = 5;
inline constexpr unsigned kNetFGuestTso4 = 7;   // the device may deliver TCPv4 GSO frames
inline constexpr unsigned kNetFGuestTso6 = 8;
inline constexpr unsigned kNetFGuestEcn = 9;    // ... with the ECN bit
inline constexpr unsigned kNetFHostTso4 = 11;   // the driver may send TCPv4 GSO frames
inline constexpr unsigned kNetFHostTso6 = 12;
inline constexpr unsigned kNetFHostEcn = 13;    // ... with the ECN bit
inline constexpr unsigned kNetFMrgRxbuf = 15;   // a received frame may span several buffers
inline constexpr unsigned kNetFStatus = 16;

// struct virtio_net_hdr_v1 (spec 5.1.6): with VERSION_1 always 12 bytes, num_buffers included.
// Little-endian like x86, so read and written as native integers.
struct NetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(NetHdr) == 12);

inline constexpr uint8_t kHdrFNeedsCsum = 1;
inline constexpr uint8_t kHdrFDataValid = 2;
inline constexpr uint8_t kGsoNone = 0;
inline constexpr uint8_t kGsoTcpV4 = 1;
inline constexpr uint8_t kGsoTcpV6 = 4;
inline constexpr uint8_t kGsoEcn = 0x80;

enum class TxHdrError { kNone, kLength, kCsum, kGso };

// A transmit header and its frame, checked against the negotiated `features` and the NIC's
// largest frame: NEEDS_CSUM only with CSUM, a GSO type only with HOST_TSO4/6 (its ECN bit only
// with HOST_ECN), every field against the frame (net::check_offload). Other flag bits are
// ignored (DATA_VALID is not the driver's to set). kLength: a plain frame larger than
// `max_frame`, or a GSO frame larger than net::kMaxGsoFrame.
TxHdrError parse_tx_hdr(const NetHdr& h, std::span<const uint8_t> frame, uint64_t features,
                        size_t max_frame, net::Offload& off);

// What a driver that negotiated `features` can receive.
net::Accepts rx_accepts(uint64_t features);

// The receive header for a frame the guest can take as it is (net::resolve did the rest):
// flags and checksum fields only with GUEST_CSUM, GSO fields for a GSO frame, num_buffers 1.
NetHdr rx_hdr(const net::Offload& off, uint64_t features);

}  // namespace gears::vmm::virtio
