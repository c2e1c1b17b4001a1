/* gears ABI: the VNET-style L2 overlay's encapsulation header.
 * C-compatible: included by C++ (gears-vmm's overlay switch) and by C (the guest-side overlay
 * accelerator, kbuild, gcc-12). This file is the only definition of the wire format.
 *
 * One Ethernet frame travels in one UDP datagram:
 *
 *   | outer IPv4 | UDP | gears_overlay_hdr (12 bytes) | Ethernet frame (length bytes) |
 *
 * All multi-byte fields are big-endian (network byte order). A receiver drops (and counts)
 * a datagram unless: it holds at least the header; magic and version match; no unknown flag
 * is set; network equals the receiver's overlay id; length == datagram size - header size; and
 * GEARS_OVERLAY_MIN_FRAME <= length <= the receiver's maximum frame (at most
 * GEARS_OVERLAY_MAX_FRAME). There is no padding: the frame starts at byte 12, so an inner IPv4
 * header behind a 14-byte Ethernet header is 4-byte aligned in an outer Ethernet/IPv4/UDP packet. */
#ifndef GEARS_ABI_OVERLAY_H
#define GEARS_ABI_OVERLAY_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
#endif

#define GEARS_OVERLAY_MAGIC 0x474f564cu /* "GOVL" */
#define GEARS_OVERLAY_VERSION 1u
/* No flags are defined in version 1: a set bit means a newer sender, and the packet is dropped. */
#define GEARS_OVERLAY_FLAGS_KNOWN 0x00u

/* The UDP port an overlay endpoint listens on when its configuration names none. */
#define GEARS_OVERLAY_DEFAULT_PORT 7878u

/* Frame bounds: an Ethernet header (dst, src, ethertype) at least; at most a 1500-byte payload
 * plus Ethernet header and one 802.1Q tag, unless an endpoint is configured for a larger MTU,
 * which may not exceed a 9000-byte payload (jumbo frames). */
#define GEARS_OVERLAY_ETH_HLEN 14u
#define GEARS_OVERLAY_MIN_FRAME GEARS_OVERLAY_ETH_HLEN
#define GEARS_OVERLAY_FRAME_OVERHEAD 18u /* Ethernet header + 802.1Q tag */
#define GEARS_OVERLAY_DEFAULT_MTU 1500u
#define GEARS_OVERLAY_MAX_MTU 9000u
#define GEARS_OVERLAY_MAX_FRAME (GEARS_OVERLAY_MAX_MTU + GEARS_OVERLAY_FRAME_OVERHEAD)

struct gears_overlay_hdr {
#ifdef __KERNEL__
  __be32 magic;   /* GEARS_OVERLAY_MAGIC */
  __u8 version;   /* GEARS_OVERLAY_VERSION */
  __u8 flags;     /* 0 in version 1 */
  __be16 length;  /* bytes of Ethernet frame after this header */
  __be32 network; /* overlay id: one host may serve several overlays on different ports */
#else
  uint32_t magic;
  uint8_t version;
  uint8_t flags;
  uint16_t length;
  uint32_t network;
#endif
};

#define GEARS_OVERLAY_HDR_SIZE 12u

#ifdef __cplusplus
static_assert(sizeof(struct gears_overlay_hdr) == GEARS_OVERLAY_HDR_SIZE, "overlay header is 12 bytes");
#else
_Static_assert(sizeof(struct gears_overlay_hdr) == GEARS_OVERLAY_HDR_SIZE, "overlay header is 12 bytes");
#endif

#endif /* GEARS_ABI_OVERLAY_H */
