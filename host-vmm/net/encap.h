// The overlay's encapsulation (sdk/include/gears/abi/overlay.h): one Ethernet frame behind a
// 12-byte header in one UDP payload. Decapsulation is where untrusted bytes from the network
// are checked, so every rule of the wire format is enforced here and nowhere else.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "gears/abi/overlay.h"

namespace gears::vmm::net {

inline constexpr size_t kHeaderSize = GEARS_OVERLAY_HDR_SIZE;

// Frame size limits for an MTU (payload bytes): header + payload + one VLAN tag.
constexpr size_t max_frame_for_mtu(uint32_t mtu) { return size_t{mtu} + GEARS_OVERLAY_FRAME_OVERHEAD; }

// Writes header + frame into `out` (at least kHeaderSize + frame.size() bytes); returns the
// payload size, or 0 when `out` is too small or the frame does not fit the length field.
size_t encapsulate(uint32_t network, std::span<const uint8_t> frame, std::span<uint8_t> out);

enum class DecapError {
  kNone,
  kShort,         // smaller than the header
  kBadMagic,
  kBadVersion,
  kBadFlags,      // a flag this version does not know
  kWrongNetwork,  // another overlay's packet
  kBadLength,     // length field disagrees with the datagram size
  kFrameTooShort, // less than an Ethernet header
  kFrameTooLong,  // more than the receiver's maximum frame
};

struct Decapsulated {
  DecapError error = DecapError::kNone;
  std::span<const uint8_t> frame;  // valid when error == kNone; points into the packet
};

Decapsulated decapsulate(std::span<const uint8_t> packet, uint32_t network, size_t max_frame);

}  // namespace gears::vmm::net
