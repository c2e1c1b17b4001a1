/* btl_gears_region.h: attaching the gears region (one-time initialisation, validation), claiming,
 * keeping alive, reclaiming and releasing a slot. Plain C + POSIX, no Open MPI.
 *
 * A process attaches with gears_region_attach (open + mmap MAP_SHARED + initialise or
 * validate), claims a slot with gears_region_claim (which also starts the heartbeat thread and
 * resets the rings of the slot) and leaves with gears_region_detach (stops the heartbeat,
 * clears the token if it is still ours, unmaps). Nothing here relies on the other processes
 * sharing a kernel: no pids, no futexes, no files besides the region; only the memory.
 */
#ifndef BTL_GEARS_REGION_H
#define BTL_GEARS_REGION_H

#include <pthread.h>
#include <stdint.h>

#include "gears_mpi_region.h"

struct gears_region {
  unsigned char *base; /* the mapping */
  uint64_t size;
  struct gears_mpi_layout layout; /* validated private copy; never reread from the region */
  uint8_t id[16];                 /* private copy of the region id */
  struct gears_mpi_region_hdr *hdr;
  struct gears_mpi_slot *slots;
  int initialised_here; /* this process initialised the region */
  /* the slot */
  int have_slot;
  uint32_t slot;
  uint64_t token;
  int reclaimed; /* the slot was taken over from a dead owner */
  /* heartbeat */
  pthread_t hb_thread;
  pthread_mutex_t hb_mutex;
  pthread_cond_t hb_cond;
  int hb_running, hb_stop;
  uint32_t hb_period_ms;
  char err[256]; /* why the last call failed */
};

/* Map `path` (size: size_override when nonzero, else lseek(SEEK_END) of the file/device),
 * initialise the region when it is fresh (slot count want_slots, 0 = automatic) or validate
 * it. init_wait_ms: how long an initialiser may take before it is presumed dead. 0 on
 * success; -1 with r->err set (and nothing left mapped) otherwise. */
int gears_region_attach(struct gears_region *r, const char *path, uint64_t size_override, uint32_t want_slots,
                        uint32_t init_wait_ms);

/* Claim a slot: a free one, else (after watching for reclaim_ms) one whose heartbeat has not
 * advanced in that time. Resets every ring of the slot, starts the heartbeat thread
 * (hb_period_ms). 0 on success, -1 with r->err set. */
int gears_region_claim(struct gears_region *r, uint32_t reclaim_ms, uint32_t hb_period_ms);

/* Stop the heartbeat, release the slot (token cleared when still ours), unmap. Idempotent. */
void gears_region_detach(struct gears_region *r);

/* Whether slot `s` is currently held with `token` (a peer's published claim still stands). */
int gears_region_slot_held(const struct gears_region *r, uint32_t s, uint64_t token);

static inline struct gears_mpi_ring_ctl *gears_region_ctl(const struct gears_region *r, uint32_t from, uint32_t to) {
  return (struct gears_mpi_ring_ctl *)(void *)(r->base + r->layout.ctl_offset) +
         ((uint64_t)from * r->layout.slot_count + to);
}

static inline unsigned char *gears_region_ring_data(const struct gears_region *r, uint32_t from, uint32_t to) {
  return r->base + r->layout.data_offset + ((uint64_t)from * r->layout.slot_count + to) * r->layout.ring_bytes;
}

/* 16 random bytes -> "0123abcd..." (33 bytes with the NUL). */
void gears_region_id_hex(const uint8_t id[16], char out[33]);

/* Monotonic milliseconds (the heartbeat and liveness clock). */
uint64_t gears_region_now_ms(void);

#endif /* BTL_GEARS_REGION_H */
