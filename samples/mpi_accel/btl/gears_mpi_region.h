/* gears_mpi_region.h: the layout of the MPI accelerator's shared region (/dev/gears-mpi in a
 * guest, a MAP_SHARED file on the host), shared by every process that maps it: the Open MPI BTL
 * `gears` (samples/mpi_accel/btl), and whatever else wants to read it (a guest kernel module, the
 * VMM). Plain C, no Open MPI, no libc beyond <stdint.h>/<stddef.h>.
 *
 * Everything in the region is an offset or an index, never a pointer. Every value in it may have
 * been written by another VM: readers bounds-check every length, offset and index before use.
 *
 *   offset 0                 struct gears_mpi_region_hdr (magic, version, state, size, id, layout)
 *   GEARS_MPI_SLOTS_OFFSET   struct gears_mpi_slot[GEARS_MPI_MAX_SLOTS] (slot_count in use)
 *   ctl_offset               struct gears_mpi_ring_ctl[slot_count * slot_count]
 *   data_offset              ring data, slot_count * slot_count areas of ring_bytes each
 *
 * Ring (s, r) carries messages from the process in slot s to the process in slot r; its index is
 * s * slot_count + r (the diagonal s == r is never used). Each ring has exactly one producer and
 * one consumer (SPSC), so no lock is needed: the producer alone writes `head`, the consumer
 * alone writes `tail`; a process that dies holds nothing another process waits on.
 *
 * Ring entries: a 16-byte struct gears_mpi_entry then `len` payload bytes, the whole padded to
 * GEARS_MPI_ENTRY_ALIGN. An entry never wraps: when it does not fit before the end of the data
 * area, the producer fills the rest with one PAD entry and starts again at offset 0. head and tail
 * are byte counts since the ring was reset (64-bit, never wrap in practice); the position in
 * the data area is count % ring_bytes. The producer publishes an entry by storing head (release)
 * after writing it; the consumer frees it by storing tail (release) after using it.
 *
 * Initialisation (first attacher): state 0 -> GEARS_MPI_STATE_INIT | nonce (CAS) -> fill the
 * header -> GEARS_MPI_STATE_READY (release). Others wait for READY; an initialiser that stays
 * in INIT too long is presumed dead and its nonce can be replaced by CAS. A READY region whose
 * magic, version, size or layout differ from what the attacher computes is refused.
 *
 * Slots: a process claims a free slot (token 0) by CAS to its random nonzero 64-bit token,
 * bumps `generation` and resets every ring it is an end of. It advances `heartbeat` while
 * alive and stores token 0 when it leaves. A slot whose heartbeat did not move for the
 * reclaim timeout may be taken over by CAS from the dead owner's token.
 */
#ifndef GEARS_MPI_REGION_H
#define GEARS_MPI_REGION_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stddef.h>
#include <stdint.h>
#endif

#define GEARS_MPI_REGION_MAGIC 0x3149504d53524547ull /* "GEARSMPI1" little-endian-ish */
#define GEARS_MPI_REGION_VERSION 1u

#define GEARS_MPI_STATE_EMPTY 0ull
#define GEARS_MPI_STATE_INIT 0x8000000000000000ull /* | a random nonce of the initialiser */
#define GEARS_MPI_STATE_READY 0x5245414459524459ull

#define GEARS_MPI_MAX_SLOTS 64u  /* capacity of the slot table */
#define GEARS_MPI_MIN_SLOTS 2u
#define GEARS_MPI_CACHELINE 64u
#define GEARS_MPI_SLOTS_OFFSET 4096u
#define GEARS_MPI_CTL_OFFSET 8192u /* GEARS_MPI_SLOTS_OFFSET + 64 slots * 64 bytes */
#define GEARS_MPI_PAGE 4096u
#define GEARS_MPI_MIN_RING_BYTES (16u * 1024u)
#define GEARS_MPI_MAX_RING_BYTES (1ull << 30)

#define GEARS_MPI_ENTRY_ALIGN 16u
#define GEARS_MPI_ENTRY_DATA 1u
#define GEARS_MPI_ENTRY_PAD 2u

struct gears_mpi_region_hdr {
  uint64_t magic;        /* GEARS_MPI_REGION_MAGIC, written by the initialiser */
  uint32_t version;      /* GEARS_MPI_REGION_VERSION */
  uint32_t hdr_bytes;    /* sizeof(struct gears_mpi_region_hdr) */
  uint64_t state;        /* EMPTY / INIT|nonce / READY (CAS) */
  uint64_t size;         /* bytes of the whole region */
  uint8_t region_id[16]; /* random, chosen by the initialiser; peers compare it */
  uint32_t slot_count;   /* slots in use, GEARS_MPI_MIN_SLOTS .. GEARS_MPI_MAX_SLOTS */
  uint32_t reserved0;
  uint64_t ring_bytes;  /* data bytes of one ring, a multiple of GEARS_MPI_CACHELINE */
  uint64_t ctl_offset;  /* GEARS_MPI_CTL_OFFSET */
  uint64_t data_offset; /* first ring's data */
  uint64_t reserved[6];
};

struct gears_mpi_slot { /* one cache line */
  uint64_t token;       /* 0: free; else the owner's random token */
  uint64_t heartbeat;   /* advanced by the owner while it lives */
  uint64_t generation;  /* bumped at each claim */
  uint64_t reserved[5];
};

struct gears_mpi_ring_ctl { /* producer and consumer words on their own cache lines */
  uint64_t head; /* bytes produced; written by the producer only */
  uint64_t pad0[7];
  uint64_t tail; /* bytes consumed; written by the consumer only */
  uint64_t pad1[7];
};

struct gears_mpi_entry {
  uint32_t len;   /* payload bytes after this header (PAD: bytes skipped after it) */
  uint8_t kind;   /* GEARS_MPI_ENTRY_DATA / GEARS_MPI_ENTRY_PAD */
  uint8_t tag;    /* DATA: the BTL active-message tag */
  uint16_t check; /* gears_mpi_entry_check(len, kind, tag, seq) */
  uint32_t seq;   /* per-ring entry number, from 0 at reset */
  uint32_t reserved;
};

/* The layout every attacher computes from the region size and slot count. */
struct gears_mpi_layout {
  uint32_t slot_count;
  uint64_t ctl_offset;
  uint64_t data_offset;
  uint64_t ring_bytes;
};

static inline uint64_t gears_mpi_align_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

/* 0 and *out filled when a region of `size` bytes holds `slot_count` slots with rings of at
 * least GEARS_MPI_MIN_RING_BYTES; -1 otherwise. */
static inline int gears_mpi_compute_layout(uint64_t size, uint32_t slot_count, struct gears_mpi_layout *out) {
  uint64_t rings, data_offset, ring_bytes;
  if (slot_count < GEARS_MPI_MIN_SLOTS || slot_count > GEARS_MPI_MAX_SLOTS) return -1;
  rings = (uint64_t)slot_count * slot_count;
  data_offset = gears_mpi_align_up(GEARS_MPI_CTL_OFFSET + rings * sizeof(struct gears_mpi_ring_ctl), GEARS_MPI_PAGE);
  if (size <= data_offset) return -1;
  ring_bytes = (size - data_offset) / rings / GEARS_MPI_CACHELINE * GEARS_MPI_CACHELINE;
  if (ring_bytes > GEARS_MPI_MAX_RING_BYTES) ring_bytes = GEARS_MPI_MAX_RING_BYTES;
  if (ring_bytes < GEARS_MPI_MIN_RING_BYTES) return -1;
  out->slot_count = slot_count;
  out->ctl_offset = GEARS_MPI_CTL_OFFSET;
  out->data_offset = data_offset;
  out->ring_bytes = ring_bytes;
  return 0;
}

/* The slot count an initialiser picks when none is asked for: about one ring of 256 KiB per
 * pair, between 2 and GEARS_MPI_MAX_SLOTS (16 MiB: 8 slots, 64 MiB: 16, 256 MiB: 32). */
static inline uint32_t gears_mpi_auto_slots(uint64_t size) {
  uint32_t s = GEARS_MPI_MAX_SLOTS;
  while (s > GEARS_MPI_MIN_SLOTS && (uint64_t)s * s * (256u * 1024u) > size) s--;
  return s;
}

/* The largest payload one entry may carry in a ring of ring_bytes (a quarter of the ring, so
 * several fragments are in flight and a PAD never blocks an entry forever). */
static inline uint64_t gears_mpi_max_payload(uint64_t ring_bytes) {
  return ring_bytes / 4 - sizeof(struct gears_mpi_entry);
}

static inline uint64_t gears_mpi_entry_bytes(uint64_t len) {
  return gears_mpi_align_up(sizeof(struct gears_mpi_entry) + len, GEARS_MPI_ENTRY_ALIGN);
}

static inline uint16_t gears_mpi_entry_check(uint32_t len, uint8_t kind, uint8_t tag, uint32_t seq) {
  uint32_t x = 0x6d70u ^ len ^ (len >> 16) ^ ((uint32_t)kind << 8) ^ tag ^ seq ^ (seq >> 16);
  return (uint16_t)(x ^ (x >> 16));
}

#ifdef __cplusplus
static_assert(sizeof(gears_mpi_region_hdr) <= GEARS_MPI_SLOTS_OFFSET, "header fits before the slots");
static_assert(sizeof(gears_mpi_slot) == GEARS_MPI_CACHELINE, "one slot per cache line");
static_assert(GEARS_MPI_SLOTS_OFFSET + GEARS_MPI_MAX_SLOTS * sizeof(gears_mpi_slot) <= GEARS_MPI_CTL_OFFSET, "slots fit");
static_assert(sizeof(gears_mpi_ring_ctl) == 2 * GEARS_MPI_CACHELINE, "ring control is two lines");
static_assert(sizeof(gears_mpi_entry) == 16, "entry header is 16 bytes");
#else
_Static_assert(sizeof(struct gears_mpi_region_hdr) <= GEARS_MPI_SLOTS_OFFSET, "header fits before the slots");
_Static_assert(sizeof(struct gears_mpi_slot) == GEARS_MPI_CACHELINE, "one slot per cache line");
_Static_assert(GEARS_MPI_SLOTS_OFFSET + GEARS_MPI_MAX_SLOTS * sizeof(struct gears_mpi_slot) <= GEARS_MPI_CTL_OFFSET,
               "slots fit");
_Static_assert(sizeof(struct gears_mpi_ring_ctl) == 2 * GEARS_MPI_CACHELINE, "ring control is two lines");
_Static_assert(sizeof(struct gears_mpi_entry) == 16, "entry header is 16 bytes");
#endif

#endif /* GEARS_MPI_REGION_H */
