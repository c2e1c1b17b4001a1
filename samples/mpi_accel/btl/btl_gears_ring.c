/* btl_gears_ring.c: lock-free SPSC ring operations (see btl_gears_ring.h, gears_mpi_region.h). */
#include "btl_gears_ring.h"

#include <string.h>

#define ENTRY_HDR ((uint64_t)sizeof(struct gears_mpi_entry))

void gears_ring_reset(struct gears_mpi_ring_ctl *ctl) {
  /* release: whoever sees the reset also sees the claim (generation) that came before it */
  __atomic_store_n(&ctl->head, 0, __ATOMIC_RELEASE);
  __atomic_store_n(&ctl->tail, 0, __ATOMIC_RELEASE);
}

void gears_ring_tx_init(struct gears_ring_tx *tx, struct gears_mpi_ring_ctl *ctl, unsigned char *data, uint64_t size) {
  memset(tx, 0, sizeof *tx);
  tx->ctl = ctl;
  tx->data = data;
  tx->size = size;
  tx->max_payload = gears_mpi_max_payload(size);
}

void gears_ring_rx_init(struct gears_ring_rx *rx, struct gears_mpi_ring_ctl *ctl, const unsigned char *data,
                        uint64_t size) {
  memset(rx, 0, sizeof *rx);
  rx->ctl = ctl;
  rx->data = data;
  rx->size = size;
  rx->max_payload = gears_mpi_max_payload(size);
}

/* Whether `need` more bytes fit; rereads the consumer's tail only when the cached one says no. */
static int tx_has_room(struct gears_ring_tx *tx, uint64_t need) {
  uint64_t used = tx->head - tx->tail_seen;
  uint64_t tail;
  if (used <= tx->size && tx->size - used >= need) return 1;
  tail = __atomic_load_n(&tx->ctl->tail, __ATOMIC_ACQUIRE); /* the consumer is done with what it freed */
  if (tail > tx->head || tx->head - tail > tx->size) {
    /* A tail the consumer cannot have written (ahead of head, or more than a ring behind): a
     * corrupt or hostile peer. Send nothing more into this ring. */
    tx->bad_tail++;
    return 0;
  }
  tx->tail_seen = tail;
  used = tx->head - tail;
  if (tx->size - used >= need) return 1;
  tx->full++;
  return 0;
}

static void write_entry_hdr(unsigned char *at, uint32_t len, uint8_t kind, uint8_t tag, uint32_t seq) {
  struct gears_mpi_entry h;
  h.len = len;
  h.kind = kind;
  h.tag = tag;
  h.check = gears_mpi_entry_check(len, kind, tag, seq);
  h.seq = seq;
  h.reserved = 0;
  memcpy(at, &h, sizeof h);
}

void *gears_ring_reserve(struct gears_ring_tx *tx, uint64_t len) {
  uint64_t total, pos, to_end, need;
  if (len > tx->max_payload) return NULL;
  total = gears_mpi_entry_bytes(len);
  pos = tx->head % tx->size;
  to_end = tx->size - pos;
  need = total <= to_end ? total : to_end + total;
  if (!tx_has_room(tx, need)) return NULL;
  if (total > to_end) {
    /* Does not fit before the end: one PAD entry up to the end, the entry at offset 0. The PAD
     * is published with the next commit. */
    write_entry_hdr(tx->data + pos, (uint32_t)(to_end - ENTRY_HDR), GEARS_MPI_ENTRY_PAD, 0, tx->seq);
    tx->seq++;
    tx->head += to_end;
    pos = 0;
  }
  return tx->data + pos + ENTRY_HDR;
}

void gears_ring_commit(struct gears_ring_tx *tx, void *payload, uint32_t len, uint8_t tag) {
  write_entry_hdr((unsigned char *)payload - ENTRY_HDR, len, GEARS_MPI_ENTRY_DATA, tag, tx->seq);
  tx->seq++;
  tx->head += gears_mpi_entry_bytes(len);
  /* release: the entry (header and payload) is written before the consumer can see head */
  __atomic_store_n(&tx->ctl->head, tx->head, __ATOMIC_RELEASE);
  tx->msgs++;
  tx->bytes += len;
}

void gears_ring_rx_watch(struct gears_ring_rx *rx, const uint64_t *generation) {
  rx->generation = generation;
  rx->generation_seen = __atomic_load_n(generation, __ATOMIC_ACQUIRE);
}

/* Lost framing (a corrupt head or entry). When head went backwards and the producer slot
 * changed hands since we last looked, its new owner reset the ring: start over from 0 (returns 1, poll again). Otherwise
 * count one drop, skip everything published so far and accept whatever sequence number comes
 * next (returns 0). */
static int rx_lost(struct gears_ring_rx *rx, uint64_t head) {
  if (rx->generation != NULL && head < rx->tail) { /* a reset goes backwards; a producer never does */
    uint64_t gen = __atomic_load_n(rx->generation, __ATOMIC_ACQUIRE);
    if (gen != rx->generation_seen) {
      rx->generation_seen = gen;
      rx->tail = 0;
      rx->seq = 0;
      rx->resync = 0;
      return 1;
    }
  }
  rx->dropped++;
  rx->tail = head;
  rx->resync = 1;
  __atomic_store_n(&rx->ctl->tail, head, __ATOMIC_RELEASE);
  return 0;
}

int gears_ring_poll(struct gears_ring_rx *rx, int max_entries, gears_ring_deliver_fn deliver, void *ctx) {
  uint64_t head, avail;
  int n = 0, restarted = 0;
again:
  head = __atomic_load_n(&rx->ctl->head, __ATOMIC_ACQUIRE); /* entries before head are written */
  avail = head - rx->tail;
  if (avail == 0) return n;
  if (avail > rx->size || avail % GEARS_MPI_ENTRY_ALIGN != 0) {
    if (rx_lost(rx, head) && !restarted++) goto again;
    return n;
  }
  while (avail != 0 && n < max_entries) {
    uint64_t pos = rx->tail % rx->size;
    uint64_t words[2], total;
    struct gears_mpi_entry h;
    int ok;
    if (pos % GEARS_MPI_ENTRY_ALIGN != 0 || pos + ENTRY_HDR > rx->size) {
      if (rx_lost(rx, head) && !restarted++) goto again;
      break;
    }
    /* Read the header once, as two words: every check below is on this private copy. */
    words[0] = __atomic_load_n((const uint64_t *)(const void *)(rx->data + pos), __ATOMIC_RELAXED);
    words[1] = __atomic_load_n((const uint64_t *)(const void *)(rx->data + pos + 8), __ATOMIC_RELAXED);
    memcpy(&h, words, sizeof h);
    total = gears_mpi_entry_bytes(h.len);
    ok = h.check == gears_mpi_entry_check(h.len, h.kind, h.tag, h.seq) && (rx->resync || h.seq == rx->seq) &&
         total <= avail;
    if (h.kind == GEARS_MPI_ENTRY_PAD)
      ok = ok && total == rx->size - pos;
    else if (h.kind == GEARS_MPI_ENTRY_DATA)
      ok = ok && h.len <= rx->max_payload && total <= rx->size - pos;
    else
      ok = 0;
    if (!ok) {
      if (rx_lost(rx, head) && !restarted++) goto again;
      break;
    }
    rx->resync = 0;
    rx->seq = h.seq + 1;
    if (h.kind == GEARS_MPI_ENTRY_DATA) {
      if (deliver(ctx, h.tag, rx->data + pos + ENTRY_HDR, h.len) != 0) {
        rx->dropped++;
      } else {
        rx->msgs++;
        rx->bytes += h.len;
        n++;
      }
    }
    rx->tail += total;
    avail -= total;
    /* release: done reading the entry before the producer may overwrite it */
    __atomic_store_n(&rx->ctl->tail, rx->tail, __ATOMIC_RELEASE);
  }
  return n;
}
