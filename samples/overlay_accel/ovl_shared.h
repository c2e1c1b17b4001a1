/* overlay-accel: the memory the guest-kernel half shares with the VMM half (doc/overlay-accel.md).
 * The guest allocates it (physically contiguous, OVL_AREA_SIZE bytes) and announces its
 * guest-physical address by hypercall; the VMM half maps it through ServiceHost::guest_physical.
 * C, for both sides: kbuild (gcc-12, the guest kernel's headers) and gears-vmm (C++).
 *
 *   0              ovl_ctrl: identity, what the VMM's control plane hands the guest (station
 *                  address, overlay id, MTU, the MACs at peer hosts), counters
 *   OVL_RINGS_OFF  ovl_rings: producer/consumer indices of the TX and RX rings
 *   OVL_TX_OFF     OVL_TX_SLOTS slots, guest -> VMM: entries (below)
 *   OVL_RX_OFF     OVL_RX_SLOTS slots, VMM -> guest: a frame (the VMM decapsulated it), one slot each
 *
 * A TX entry is one of
 *   - OVL_TX_ENCAP: a gears_overlay_hdr and its frame, encapsulated by the guest (a complete
 *     frame of at most one slot): the VMM sends it to the peer as it is;
 *   - a frame with its offload state (a partial checksum, or a TCP segmentation-offload frame
 *     of up to OVL_TX_MAX_FRAME bytes): the VMM's host path completes, segments and
 *     encapsulates it as it does the NIC's own frames. The guest never segments or checksums:
 *     that work is the host's, as it would be the NIC's.
 * An entry starts at a slot and takes ovl_tx_entry_slots(len) consecutive slots (wrapping at
 * the ring's end); its data runs on through the data areas of those slots; the first slot's
 * header describes the entry, the others' headers are unused.
 *
 * Indices run freely (u32, wrapping); a slot is index % slots (slot counts are powers of two).
 * Everything the other side wrote is untrusted: each side checks indices and lengths. */
#ifndef OVL_SHARED_H
#define OVL_SHARED_H

#ifdef __KERNEL__
#include <linux/types.h>
typedef __u8 ovl_u8;
typedef __u16 ovl_u16;
typedef __u32 ovl_u32;
typedef __u64 ovl_u64;
#else
#include <stdint.h>
typedef uint8_t ovl_u8;
typedef uint16_t ovl_u16;
typedef uint32_t ovl_u32;
typedef uint64_t ovl_u64;
#endif

#define OVL_MAGIC 0x4f564c32u /* "OVL2": entries of several slots, offload state */
#define OVL_SLOT_SIZE 2048u
#define OVL_SLOT_HDR 16u
#define OVL_SLOT_DATA (OVL_SLOT_SIZE - OVL_SLOT_HDR)
#define OVL_TX_SLOTS 256u
#define OVL_RX_SLOTS 128u
#define OVL_RINGS_OFF 4096u
#define OVL_TX_OFF 8192u
#define OVL_RX_OFF (OVL_TX_OFF + OVL_TX_SLOTS * OVL_SLOT_SIZE)
#define OVL_AREA_SIZE (OVL_RX_OFF + OVL_RX_SLOTS * OVL_SLOT_SIZE)
#define OVL_MAX_ROUTES 64u

/* Guest counters (the guest writes them, the VMM half shows them in `gearsctl stats`). */
enum ovl_guest_counter {
  OVL_G_TX_RING,      /* frames the guest encapsulated into the TX ring */
  OVL_G_TX_FALLBACK,  /* frames left to the NIC (not remote, multicast, too large) */
  OVL_G_TX_FULL,      /* dropped: the ring stayed full after a kick */
  OVL_G_TX_KICKS,     /* hypercalls: the VMM's poller was asleep */
  OVL_G_RX_RING,      /* frames received through the RX ring */
  OVL_G_RX_DROPPED,   /* RX slots dropped (bad length, no memory) */
  OVL_G_RX_SLEEPS,    /* times the guest's receive poller went to sleep */
  OVL_G_TX_GSO,       /* large (TSO) frames handed over whole (the VMM segments them) */
  OVL_G_COUNT,
};

struct ovl_ctrl {
  /* Written by the guest at allocation. */
  ovl_u32 magic;
  ovl_u32 area_size;
  ovl_u32 tx_slots, rx_slots;
  /* Written by the VMM half at attach and on route changes. */
  ovl_u8 mac[6];          /* the NIC whose frames the guest may encapsulate */
  ovl_u16 mtu;
  ovl_u32 network;        /* overlay id (host byte order here; big-endian on the wire) */
  ovl_u32 attached;       /* 1 once the VMM half filled this page */
  ovl_u32 vmm_sleeping;   /* 1: the VMM's poller sleeps; kick it after a push */
  ovl_u32 routes_seq;     /* seqlock over nroutes/routes: odd while the VMM rewrites them */
  ovl_u32 nroutes;
  ovl_u8 routes[OVL_MAX_ROUTES][6]; /* unicast MACs reached at peer hosts */
  /* Written by the guest. */
  ovl_u32 guest_rx_polling; /* 1: the guest polls the RX ring; 0: frames go to the NIC */
  ovl_u32 pad;
  ovl_u64 counters[OVL_G_COUNT];
};

struct ovl_ring_index {
  ovl_u32 prod;        /* written by the producer only */
  ovl_u8 pad0[60];
  ovl_u32 cons;        /* written by the consumer only */
  ovl_u8 pad1[60];
};

struct ovl_rings {
  struct ovl_ring_index tx; /* guest produces, VMM consumes */
  struct ovl_ring_index rx; /* VMM produces, guest consumes */
};

/* ovl_slot.flags */
#define OVL_TX_ENCAP 0x01u /* data: gears_overlay_hdr + frame; no offload fields */
#define OVL_TX_CSUM 0x02u  /* the frame's checksum at csum_start + csum_offset is partial */
/* ovl_slot.gso_type (virtio_net_hdr's values) */
#define OVL_GSO_NONE 0u
#define OVL_GSO_TCPV4 1u
#define OVL_GSO_TCPV6 4u
#define OVL_GSO_ECN 0x80u
/* The largest TX entry: a 65535-byte IP packet behind an Ethernet header and an 802.1Q tag. */
#define OVL_TX_MAX_FRAME (65535u + 18u)

struct ovl_slot {
  ovl_u32 len;         /* bytes of data: of the whole entry, in this slot and those after it */
  ovl_u8 flags;        /* TX: OVL_TX_* */
  ovl_u8 gso_type;     /* TX: OVL_GSO_* */
  ovl_u16 gso_size;    /* TX: TCP payload bytes per segment */
  ovl_u16 csum_start;  /* TX: with OVL_TX_CSUM */
  ovl_u16 csum_offset;
  ovl_u16 hdr_len;     /* TX: header bytes of a GSO frame (a hint) */
  ovl_u16 pad;
  ovl_u8 data[OVL_SLOT_DATA];
};

/* Slots a TX entry of `len` data bytes takes (at least one). */
static inline ovl_u32 ovl_tx_entry_slots(ovl_u32 len)
{
  return len <= OVL_SLOT_DATA ? 1u : (len + OVL_SLOT_DATA - 1u) / OVL_SLOT_DATA;
}

#ifdef __cplusplus
static_assert(sizeof(struct ovl_ctrl) <= OVL_RINGS_OFF, "control page");
static_assert(sizeof(struct ovl_rings) <= OVL_TX_OFF - OVL_RINGS_OFF, "ring page");
static_assert(sizeof(struct ovl_slot) == OVL_SLOT_SIZE, "slot size");
#else
_Static_assert(sizeof(struct ovl_ctrl) <= OVL_RINGS_OFF, "control page");
_Static_assert(sizeof(struct ovl_rings) <= OVL_TX_OFF - OVL_RINGS_OFF, "ring page");
_Static_assert(sizeof(struct ovl_slot) == OVL_SLOT_SIZE, "slot size");
#endif

#endif /* OVL_SHARED_H */
