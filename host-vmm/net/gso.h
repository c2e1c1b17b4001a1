// Software checksum completion and TCP segmentation (GSO) for frames that carry offload state
// (net/offload.h), for destinations that cannot take it: a peer host over the overlay (the
// switch resolves before it encapsulates), a guest NIC that did not negotiate the offload (the
// device resolves before it fills receive buffers).
//
// Frame and offload fields come from a guest: every function re-parses the frame it is given,
// checks the fields against it, and never reads or writes outside it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "net/offload.h"

namespace gears::vmm::net {

// RFC 1071: the one's-complement sum of `data` read as big-endian 16-bit words (an odd last
// byte is padded with zero), added to `sum`. Not folded; `data` counts as starting on an even
// offset. Chain calls only on even-length pieces.
uint32_t csum_add(std::span<const uint8_t> data, uint32_t sum = 0);
// Folds a sum to 16 bits (end-around carry); not complemented.
uint16_t csum_fold(uint32_t sum);

// Why a frame's offload fields were refused.
enum class OffloadError {
  kNone,
  kCsumRange,     // csum_start / csum_offset point outside the frame
  kGsoNoCsum,     // a GSO frame without NEEDS_CSUM (spec 5.1.6.2: the driver must set it)
  kGsoSize,       // gso_size 0, or a segment would be larger than the destination's frame
  kGsoHdrLen,     // hdr_len past the end of the frame
  kGsoHeaders,    // not Ethernet [+ 802.1Q] + IPv4/IPv6 + TCP of the declared type, or bad headers
  kGsoLength,     // IP length field disagrees with the frame
  kGsoCsumField,  // csum_start / csum_offset are not the TCP checksum field
  kGsoEmpty,      // no TCP payload to segment
};
std::string_view offload_error_name(OffloadError e);

// Where the headers of a checked TCP GSO frame are (byte offsets into the frame).
struct TcpLayout {
  size_t l3 = 0;       // IP header
  size_t l4 = 0;       // TCP header
  size_t payload = 0;  // TCP payload (= bytes of headers each segment repeats)
  bool v6 = false;
};

// Checks `off` against `frame`. NEEDS_CSUM: csum_start < size and csum_start + csum_offset + 2
// <= size. GSO: NEEDS_CSUM set on the TCP checksum field; an Ethernet frame (one 802.1Q tag
// allowed) holding an IPv4 (not fragmented, options allowed) or IPv6 (no extension headers)
// TCP packet of the declared type whose IP length matches the frame exactly; hdr_len <= size;
// a non-empty payload; and every segment (headers + at most gso_size payload) at most
// `max_segment_frame` bytes. `layout` (optional) receives the header offsets of a GSO frame.
OffloadError check_offload(std::span<const uint8_t> frame, const Offload& off, size_t max_segment_frame,
                           TcpLayout* layout = nullptr);

// Completes a partial checksum in place (as Linux's skb_checksum_help: the field's pseudo-header
// sum is part of the range; a result of 0 is stored as 0xffff). False, frame untouched, when
// the range does not lie inside the frame.
bool complete_csum(std::span<uint8_t> frame, uint16_t csum_start, uint16_t csum_offset);

using SegmentSink = std::function<void(std::span<const uint8_t> segment)>;

// Software TCP segmentation: cuts the payload of a GSO frame into gso_size pieces and emits one
// complete frame per piece: the headers repeated, IPv4 total length, id (+1 per segment) and
// header checksum, or IPv6 payload length; TCP sequence number advanced; FIN and PSH only on
// the last segment, CWR only on the first; the TCP checksum computed in full. Nothing is
// emitted unless the frame passes check_offload (its error is returned).
OffloadError segment(std::span<const uint8_t> frame, const Offload& off, size_t max_segment_frame,
                     const SegmentSink& emit);

// What a destination can take.
struct Accepts {
  bool csum = false;  // partial checksums (GUEST_CSUM)
  bool tso4 = false;  // TCPv4 GSO frames (GUEST_TSO4, needs csum)
  bool tso6 = false;  // TCPv6 GSO frames (GUEST_TSO6, needs csum)
  bool ecn = false;   // GSO frames with the ECN bit (GUEST_ECN)
};

enum class Resolution { kAsIs, kCsumCompleted, kSegmented, kMalformed };

using FrameSink = std::function<void(std::span<const uint8_t> frame, const Offload& off)>;

// Hands `emit` what the destination can take: the frame as it is (a GSO frame's hdr_len set to
// its real header length) when it can take its offload state; a copy with the checksum
// completed (DATA_VALID, no NEEDS_CSUM) when it cannot take a partial checksum; its segments
// (each DATA_VALID) when it cannot take the GSO frame. kMalformed (nothing emitted) when the
// offload fields do not pass check_offload against `max_segment_frame`.
Resolution resolve(std::span<const uint8_t> frame, const Offload& off, const Accepts& dest,
                   size_t max_segment_frame, const FrameSink& emit);

}  // namespace gears::vmm::net
