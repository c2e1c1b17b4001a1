#include "net/encap.h"

#include <arpa/inet.h>

#include <cstring>

namespace gears::vmm::net {

size_t encapsulate(uint32_t network, std::span<const uint8_t> frame, std::span<uint8_t> out) {
  if (frame.size() > 0xffff || out.size() < kHeaderSize + frame.size()) return 0;
  gears_overlay_hdr h{};
  h.magic = htonl(GEARS_OVERLAY_MAGIC);
  h.version = GEARS_OVERLAY_VERSION;
  h.flags = 0;
  h.length = htons(static_cast<uint16_t>(frame.size()));
  h.network = htonl(network);
  std::memcpy(out.data(), &h, kHeaderSize);
  std::memcpy(out.data() + kHeaderSize, frame.data(), frame.size());
  return kHeaderSize + frame.size();
}

Decapsulated decapsulate(std::span<const uint8_t> packet, uint32_t network, size_t max_frame) {
  Decapsulated d;
  if (packet.size() < kHeaderSize) {
    d.error = DecapError::kShort;
    return d;
  }
  gears_overlay_hdr h;
  std::memcpy(&h, packet.data(), kHeaderSize);
  const size_t len = ntohs(h.length);
  if (ntohl(h.magic) != GEARS_OVERLAY_MAGIC) d.error = DecapError::kBadMagic;
  else if (h.version != GEARS_OVERLAY_VERSION) d.error = DecapError::kBadVersion;
  else if ((h.flags & ~GEARS_OVERLAY_FLAGS_KNOWN) != 0) d.error = DecapError::kBadFlags;
  else if (ntohl(h.network) != network) d.error = DecapError::kWrongNetwork;
  else if (len != packet.size() - kHeaderSize) d.error = DecapError::kBadLength;
  else if (len < GEARS_OVERLAY_MIN_FRAME) d.error = DecapError::kFrameTooShort;
  else if (len > max_frame) d.error = DecapError::kFrameTooLong;
  else d.frame = packet.subspan(kHeaderSize, len);
  return d;
}

}  // namespace gears::vmm::net
