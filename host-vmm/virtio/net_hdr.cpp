#include "virtio/net_hdr.h"

#include "gears/abi/overlay.h"
#include "virtio/spec.h"

namespace gears::vmm::virtio {
namespace {

bool has(uint64_t features, unsigned bit) { return (features & feature_bit(bit)) != 0; }

}  // namespace

TxHdrError parse_tx_hdr(const NetHdr& h, std::span<const uint8_t> frame, uint64_t features,
                        size_t max_frame, net::Offload& off) {
  off = net::Offload{};
  if (frame.size() < GEARS_OVERLAY_MIN_FRAME) return TxHdrError::kLength;
  if (h.flags & kHdrFNeedsCsum) {
    if (!has(features, kNetFCsum)) return TxHdrError::kCsum;
    off.needs_csum = true;
    off.csum_start = h.csum_start;
    off.csum_offset = h.csum_offset;
  }
  const uint8_t type = h.gso_type & static_cast<uint8_t>(~kGsoEcn);
  if (type == kGsoNone) {
    if (h.gso_type & kGsoEcn) return TxHdrError::kGso;
    if (frame.size() > max_frame) return TxHdrError::kLength;
    if (off.needs_csum && net::check_offload(frame, off, max_frame) != net::OffloadError::kNone)
      return TxHdrError::kCsum;
    return TxHdrError::kNone;
  }
  if (type == kGsoTcpV4 && has(features, kNetFHostTso4)) {
    off.gso = net::Gso::kTcpV4;
  } else if (type == kGsoTcpV6 && has(features, kNetFHostTso6)) {
    off.gso = net::Gso::kTcpV6;
  } else {
    return TxHdrError::kGso;  // UDP/UFO, unknown types, or a type that was not negotiated
  }
  if ((h.gso_type & kGsoEcn) && !has(features, kNetFHostEcn)) return TxHdrError::kGso;
  off.gso_ecn = (h.gso_type & kGsoEcn) != 0;
  off.gso_size = h.gso_size;
  off.hdr_len = h.hdr_len;
  if (frame.size() > net::kMaxGsoFrame) return TxHdrError::kLength;
  const net::OffloadError e = net::check_offload(frame, off, max_frame);
  if (e == net::OffloadError::kCsumRange) return TxHdrError::kCsum;
  if (e != net::OffloadError::kNone) return TxHdrError::kGso;
  return TxHdrError::kNone;
}

net::Accepts rx_accepts(uint64_t features) {
  net::Accepts a;
  a.csum = has(features, kNetFGuestCsum);
  // GUEST_TSO4/6 and GUEST_ECN depend on GUEST_CSUM (spec 5.1.3.1); without it they mean nothing.
  a.tso4 = a.csum && has(features, kNetFGuestTso4);
  a.tso6 = a.csum && has(features, kNetFGuestTso6);
  a.ecn = (a.tso4 || a.tso6) && has(features, kNetFGuestEcn);
  return a;
}

NetHdr rx_hdr(const net::Offload& off, uint64_t features) {
  NetHdr h{};
  h.num_buffers = 1;
  // Without GUEST_CSUM the device must set flags to zero (spec 5.1.6.3.2); resolve() has
  // delivered complete checksums then.
  if (!has(features, kNetFGuestCsum)) return h;
  if (off.needs_csum) {
    h.flags = kHdrFNeedsCsum;
    h.csum_start = off.csum_start;
    h.csum_offset = off.csum_offset;
  } else if (off.data_valid) {
    h.flags = kHdrFDataValid;
  }
  if (off.is_gso()) {
    h.gso_type = static_cast<uint8_t>((off.gso == net::Gso::kTcpV4 ? kGsoTcpV4 : kGsoTcpV6) |
                                      (off.gso_ecn ? kGsoEcn : 0));
    h.gso_size = off.gso_size;
    h.hdr_len = off.hdr_len;
  }
  return h;
}

}  // namespace gears::vmm::virtio
