/* btl_gears_ring.h: one lock-free single-producer single-consumer ring of the gears region
 * (layout and entry format: gears_mpi_region.h). Plain C, no Open MPI.
 *
 * The producer keeps its head, sequence number and the last tail it read in private memory;
 * the consumer keeps its tail and sequence number. The only words shared are ctl->head
 * (producer stores, release) and ctl->tail (consumer stores, release). Everything read from
 * the ring is untrusted: the consumer checks the head it reads, every entry header (kind,
 * length, check word, sequence, bounds) and drops what does not pass, counting it; the
 * producer treats a tail it cannot believe as "ring full" and counts it. Nothing read from the
 * ring is ever used as an address without being bounds-checked against ring_bytes first.
 */
#ifndef BTL_GEARS_RING_H
#define BTL_GEARS_RING_H

#include <stddef.h>
#include <stdint.h>

#include "gears_mpi_region.h"

struct gears_ring_tx {
  struct gears_mpi_ring_ctl *ctl;
  unsigned char *data;
  uint64_t size;        /* ring_bytes */
  uint64_t max_payload; /* gears_mpi_max_payload(size) */
  uint64_t head;        /* bytes produced, including reserved-but-unpublished padding */
  uint64_t tail_seen;   /* last tail read from ctl */
  uint32_t seq;         /* next entry's sequence number */
  /* counters (private) */
  uint64_t msgs, bytes, full, bad_tail;
};

struct gears_ring_rx {
  struct gears_mpi_ring_ctl *ctl;
  const unsigned char *data;
  uint64_t size;
  uint64_t max_payload;
  uint64_t tail; /* bytes consumed */
  uint32_t seq;  /* sequence number expected next */
  int resync;    /* after a drop: take the next entry's seq as the new start */
  const uint64_t *generation; /* the producer slot's claim counter (gears_ring_rx_watch) */
  uint64_t generation_seen;
  /* counters (private) */
  uint64_t msgs, bytes, dropped;
};

/* Reset the shared words of a ring (the claimer of a slot does this for every ring it is an
 * end of, before anyone can know its slot). */
void gears_ring_reset(struct gears_mpi_ring_ctl *ctl);

void gears_ring_tx_init(struct gears_ring_tx *tx, struct gears_mpi_ring_ctl *ctl, unsigned char *data, uint64_t size);
void gears_ring_rx_init(struct gears_ring_rx *rx, struct gears_mpi_ring_ctl *ctl, const unsigned char *data,
                        uint64_t size);

/* Tell the consumer where the producer slot's claim counter is: when the ring looks corrupt
 * because a new owner of that slot reset it (a new process, not a bad entry), the consumer
 * starts over quietly instead of counting a drop. */
void gears_ring_rx_watch(struct gears_ring_rx *rx, const uint64_t *generation);

/* Room for one entry with `len` payload bytes: a pointer to where the payload goes, or NULL
 * when the ring is full for now (or len > max_payload). The entry becomes visible to the
 * consumer only at gears_ring_commit; a reservation that is never committed costs nothing but
 * (possibly) a PAD entry, which is harmless. */
void *gears_ring_reserve(struct gears_ring_tx *tx, uint64_t len);

/* Publish the entry reserved last, with its final payload length (<= the reserved length). */
void gears_ring_commit(struct gears_ring_tx *tx, void *payload, uint32_t len, uint8_t tag);

/* Deliver one entry: payload points into the ring (valid until the callback returns; the
 * producer may not reuse it before, but another VM could scribble on it: treat it as input).
 * Return 0 when taken, nonzero to count it as dropped. */
typedef int (*gears_ring_deliver_fn)(void *ctx, uint8_t tag, const void *payload, uint32_t len);

/* Consume up to max_entries entries; returns the number delivered (PAD and dropped entries
 * are not counted). */
int gears_ring_poll(struct gears_ring_rx *rx, int max_entries, gears_ring_deliver_fn deliver, void *ctx);

/* Whether the ring has bytes the consumer has not taken (a cheap peek for pollers). */
static inline int gears_ring_rx_pending(const struct gears_ring_rx *rx) {
  return __atomic_load_n(&rx->ctl->head, __ATOMIC_RELAXED) != rx->tail;
}

#endif /* BTL_GEARS_RING_H */
