/* gears_ring_check: checks the gears region and ring code (samples/mpi_accel/btl) without MPI:
 * initialisation and validation of a region file, slot claims, release and reclaim of a dead
 * process's slot, stuck-initialiser takeover, FIFO delivery across wrap-around, ring-full, and
 * that corrupt entries / heads / tails are dropped and counted, never read out of bounds.
 * Prints "gears_ring_check: OK ..." and exits 0, or names the failed checks and exits 1. */
#define _GNU_SOURCE 1
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "btl_gears_region.h"
#include "btl_gears_ring.h"

static int failures;
#define CHECK(cond)                                                         \
  do {                                                                      \
    if (!(cond)) {                                                          \
      fprintf(stderr, "gears_ring_check: FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                           \
    }                                                                       \
  } while (0)

static char path[64];

static void make_file(uint64_t size) {
  int fd;
  snprintf(path, sizeof path, "/dev/shm/gears-ring-check.%d", (int)getpid());
  unlink(path);
  fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd < 0 && errno == ENOENT) { /* no /dev/shm */
    snprintf(path, sizeof path, "/tmp/gears-ring-check.%d", (int)getpid());
    fd = open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  }
  if (fd < 0 || ftruncate(fd, (off_t)size) != 0) {
    perror("gears_ring_check: region file");
    exit(1);
  }
  close(fd);
}

static unsigned char pattern(uint64_t msg, uint64_t i) { return (unsigned char)(msg * 131u + i * 7u + 3u); }

struct sink {
  uint64_t next;      /* message number expected */
  uint64_t bad;       /* content/order mismatches */
  uint64_t got_bytes;
  uint32_t expect_len[4096];
};

static int deliver(void *ctx, uint8_t tag, const void *payload, uint32_t len) {
  struct sink *s = ctx;
  const unsigned char *p = payload;
  uint64_t msg;
  if (len < 8) {
    s->bad++;
    return 0;
  }
  memcpy(&msg, p, 8);
  if (msg != s->next || tag != (uint8_t)(msg & 0x7f) || len != s->expect_len[msg % 4096]) s->bad++;
  for (uint32_t i = 8; i < len; i++)
    if (p[i] != pattern(msg, i)) {
      s->bad++;
      break;
    }
  s->next = msg + 1;
  s->got_bytes += len;
  return 0;
}

static int send_msg(struct gears_ring_tx *tx, struct sink *s, uint64_t msg, uint32_t len) {
  unsigned char *p = gears_ring_reserve(tx, len);
  if (p == NULL) return 0;
  memcpy(p, &msg, 8);
  for (uint32_t i = 8; i < len; i++) p[i] = pattern(msg, i);
  s->expect_len[msg % 4096] = len;
  gears_ring_commit(tx, p, len, (uint8_t)(msg & 0x7f));
  return 1;
}

static int count_deliver(void *ctx, uint8_t tag, const void *payload, uint32_t len) {
  (void)tag, (void)payload, (void)len;
  (*(int *)ctx)++;
  return 0;
}

static void check_rings(struct gears_region *a, struct gears_region *b) {
  struct gears_ring_tx tx;
  struct gears_ring_rx rx;
  struct sink *s = calloc(1, sizeof *s);
  uint64_t msg = 0, sent_bytes = 0;
  uint64_t rb = a->layout.ring_bytes;
  unsigned seed = 12345;
  gears_ring_tx_init(&tx, gears_region_ctl(a, a->slot, b->slot), gears_region_ring_data(a, a->slot, b->slot), rb);
  gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);

  /* FIFO across many wrap-arounds, sizes 8 .. max payload, ring filled up then drained */
  CHECK(gears_ring_reserve(&tx, tx.max_payload + 1) == NULL);
  while (msg < 20000) {
    uint32_t len = 8 + (uint32_t)(rand_r(&seed) % (tx.max_payload - 7));
    if (rand_r(&seed) % 4 == 0) len = 8 + (uint32_t)(rand_r(&seed) % 64);
    if (send_msg(&tx, s, msg, len)) {
      msg++;
      sent_bytes += len;
    } else {
      CHECK(gears_ring_poll(&rx, 1000, deliver, s) > 0); /* full means there is something to take */
    }
    if (rand_r(&seed) % 3 == 0) gears_ring_poll(&rx, 1 + rand_r(&seed) % 4, deliver, s);
  }
  while (gears_ring_poll(&rx, 1000, deliver, s) > 0) {
  }
  CHECK(s->next == msg);
  CHECK(s->bad == 0);
  CHECK(s->got_bytes == sent_bytes);
  CHECK(rx.dropped == 0);
  CHECK(tx.full > 0);
  CHECK(rx.msgs == msg);

  /* a full ring refuses, and accepts again once drained */
  {
    uint64_t n = 0;
    while (send_msg(&tx, s, msg, 1024)) msg++, n++;
    CHECK(n > 0 && n * 1040 <= rb);
    while (gears_ring_poll(&rx, 1000, deliver, s) > 0) {
    }
    CHECK(send_msg(&tx, s, msg, 1024));
    msg++;
    while (gears_ring_poll(&rx, 1000, deliver, s) > 0) {
    }
    CHECK(s->bad == 0 && s->next == msg);
  }

  /* corrupt entries: each is dropped and counted, later good entries still arrive */
  {
    struct gears_mpi_ring_ctl *ctl = gears_region_ctl(a, a->slot, b->slot);
    unsigned char *data = gears_region_ring_data(a, a->slot, b->slot);
    int got = 0;
    struct gears_mpi_entry e = {.len = 100, .kind = GEARS_MPI_ENTRY_DATA, .tag = 1, .seq = 0};
    gears_ring_reset(ctl);
    gears_ring_tx_init(&tx, ctl, data, rb);
    gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);
    /* 1. wrong check word */
    e.check = (uint16_t)(gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq) ^ 1);
    memcpy(data, &e, sizeof e);
    __atomic_store_n(&ctl->head, gears_mpi_entry_bytes(e.len), __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0);
    CHECK(rx.dropped == 1 && got == 0 && rx.tail == 128);
    /* 2. a length far beyond the ring, with a valid check word */
    e.len = 0xfffffff0u;
    e.check = gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq);
    memcpy(data + 128, &e, sizeof e);
    __atomic_store_n(&ctl->head, 128 + 64, __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0);
    CHECK(rx.dropped == 2 && got == 0);
    /* 3. a head more than a ring ahead, and a misaligned one */
    __atomic_store_n(&ctl->head, 192 + 5 * rb, __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0);
    CHECK(rx.dropped == 3);
    __atomic_store_n(&ctl->head, rx.tail + 3, __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0);
    CHECK(rx.dropped == 4);
    /* ... and with the tail misaligned now, a later "entry" is refused too, without a crash */
    __atomic_store_n(&ctl->head, rx.tail + 16, __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0);
    CHECK(rx.dropped == 5 && got == 0);
    /* 4a. an entry that would run past the end of the ring (bounds), and 4b. one longer than
     * the largest payload but inside the ring: both dropped, nothing delivered */
    gears_ring_reset(ctl);
    gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);
    rx.tail = rb - 64;
    __atomic_store_n(&ctl->tail, rb - 64, __ATOMIC_RELEASE);
    e.len = 100;
    e.kind = GEARS_MPI_ENTRY_DATA;
    e.seq = 0;
    e.check = gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq);
    memcpy(data + rb - 64, &e, sizeof e);
    __atomic_store_n(&ctl->head, rb - 64 + gears_mpi_entry_bytes(e.len), __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0 && got == 0 && rx.dropped == 1);
    gears_ring_reset(ctl);
    gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);
    e.len = (uint32_t)rx.max_payload + 16;
    e.check = gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq);
    memcpy(data, &e, sizeof e);
    __atomic_store_n(&ctl->head, gears_mpi_entry_bytes(e.len), __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0 && got == 0 && rx.dropped == 1);
    /* 4. an unknown kind at a good place (after a resync to an aligned head) */
    gears_ring_reset(ctl);
    gears_ring_tx_init(&tx, ctl, data, rb);
    gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);
    e.len = 32;
    e.kind = 9;
    e.seq = 0;
    e.check = gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq);
    memcpy(data, &e, sizeof e);
    __atomic_store_n(&ctl->head, 48, __ATOMIC_RELEASE);
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0 && rx.dropped == 1);
    CHECK(got == 0);
    /* the producer's next entries (its seq is not what the consumer expected: resync accepts) */
    tx.head = 48;
    tx.tail_seen = 48;
    tx.seq = 77;
    s->next = msg;
    CHECK(send_msg(&tx, s, msg, 200));
    msg++;
    CHECK(send_msg(&tx, s, msg, 300));
    msg++;
    CHECK(gears_ring_poll(&rx, 10, deliver, s) == 2);
    CHECK(s->bad == 0 && rx.dropped == 1);
    /* 5. a sequence gap (an entry lost) is a drop */
    tx.seq += 5;
    CHECK(send_msg(&tx, s, msg, 64));
    msg++;
    CHECK(gears_ring_poll(&rx, 10, count_deliver, &got) == 0 && rx.dropped == 2);
  }

  /* the producer slot changes hands: its new owner resets the ring; the consumer starts over
   * quietly (no drop) and gets the new owner's entries; a corrupt entry after that is a drop */
  {
    struct gears_mpi_ring_ctl *ctl = gears_region_ctl(a, a->slot, b->slot);
    unsigned char *data = gears_region_ring_data(a, a->slot, b->slot);
    uint64_t *gen = &a->slots[a->slot].generation;
    int got = 0;
    gears_ring_reset(ctl);
    gears_ring_tx_init(&tx, ctl, data, rb);
    gears_ring_rx_init(&rx, gears_region_ctl(b, a->slot, b->slot), gears_region_ring_data(b, a->slot, b->slot), rb);
    gears_ring_rx_watch(&rx, gen);
    s->next = msg;
    for (int i = 0; i < 10; i++, msg++) CHECK(send_msg(&tx, s, msg, 500));
    CHECK(gears_ring_poll(&rx, 100, deliver, s) == 10);
    __atomic_fetch_add(gen, 1, __ATOMIC_RELAXED); /* a new owner claims the slot ... */
    gears_ring_reset(ctl);                         /* ... and resets its rings */
    gears_ring_tx_init(&tx, ctl, data, rb);
    for (int i = 0; i < 2; i++, msg++) CHECK(send_msg(&tx, s, msg, 300));
    CHECK(gears_ring_poll(&rx, 100, deliver, s) == 2);
    CHECK(rx.dropped == 0 && s->bad == 0 && s->next == msg);
    {
      struct gears_mpi_entry e = {.len = 16, .kind = GEARS_MPI_ENTRY_DATA, .tag = 1, .seq = tx.seq};
      e.check = (uint16_t)(gears_mpi_entry_check(e.len, e.kind, e.tag, e.seq) ^ 0x100);
      memcpy(data + tx.head % rb, &e, sizeof e);
      __atomic_store_n(&ctl->head, tx.head + 32, __ATOMIC_RELEASE);
      CHECK(gears_ring_poll(&rx, 100, count_deliver, &got) == 0 && got == 0 && rx.dropped == 1);
    }
  }

  /* a consumer tail the producer cannot believe: treated as full, counted */
  {
    struct gears_mpi_ring_ctl *ctl = gears_region_ctl(a, a->slot, b->slot);
    uint64_t bad0 = tx.bad_tail;
    tx.tail_seen = tx.head - rb; /* force a reread */
    __atomic_store_n(&ctl->tail, tx.head + 4096, __ATOMIC_RELEASE);
    CHECK(gears_ring_reserve(&tx, 64) == NULL);
    CHECK(tx.bad_tail == bad0 + 1);
  }
  free(s);
}

int main(void) {
  struct gears_region a, b, c, d, e;
  const uint64_t size = 4u << 20;
  int fd;
  pid_t child;
  int st;

  make_file(size);
  /* initialise (first attacher), validate (second) */
  CHECK(gears_region_attach(&a, path, 0, 4, 500) == 0);
  CHECK(a.initialised_here == 1 && a.layout.slot_count == 4);
  CHECK(gears_region_attach(&b, path, 0, 0, 500) == 0);
  CHECK(b.initialised_here == 0 && b.layout.slot_count == 4 && memcmp(a.id, b.id, 16) == 0);
  CHECK(b.layout.ring_bytes == a.layout.ring_bytes && a.layout.ring_bytes >= GEARS_MPI_MIN_RING_BYTES);
  CHECK(gears_region_claim(&a, 500, 50) == 0);
  CHECK(gears_region_claim(&b, 500, 50) == 0);
  CHECK(a.slot != b.slot);
  CHECK(gears_region_slot_held(&b, a.slot, a.token) && !gears_region_slot_held(&b, a.slot, a.token + 1));
  check_rings(&a, &b);

  /* size mismatch refused */
  CHECK(gears_region_attach(&c, path, size - 4096, 0, 500) != 0);
  CHECK(strstr(c.err, "size") != NULL);

  /* release: token cleared */
  {
    uint32_t s = b.slot;
    uint64_t t = b.token;
    gears_region_detach(&b);
    CHECK(!gears_region_slot_held(&a, s, t));
    CHECK(a.slots[s].token == 0);
  }

  /* reclaim: fill the other slots, one holder "dies" (exits without releasing; its heartbeat
   * thread dies with it); a newcomer takes exactly that slot over after the timeout */
  CHECK(gears_region_attach(&b, path, 0, 0, 500) == 0 && gears_region_claim(&b, 500, 50) == 0);
  child = fork();
  if (child == 0) {
    struct gears_region z;
    if (gears_region_attach(&z, path, 0, 0, 500) != 0 || gears_region_claim(&z, 500, 50) != 0) _exit(2);
    _exit(10 + (int)z.slot); /* no detach: a SIGKILLed rank */
  }
  waitpid(child, &st, 0);
  CHECK(WIFEXITED(st) && WEXITSTATUS(st) >= 10);
  {
    uint32_t dead = (uint32_t)(WEXITSTATUS(st) - 10);
    /* one slot still free: take it with d so the region is full */
    CHECK(gears_region_attach(&d, path, 0, 0, 500) == 0 && gears_region_claim(&d, 500, 50) == 0);
    CHECK(gears_region_attach(&c, path, 0, 0, 500) == 0);
    CHECK(gears_region_claim(&c, 600, 50) == 0);
    CHECK(c.reclaimed == 1 && c.slot == dead);
    gears_region_detach(&c);
    gears_region_detach(&d);
    /* all three live holders keep their slots; a newcomer with everything live gets nothing */
    CHECK(gears_region_attach(&d, path, 0, 0, 500) == 0 && gears_region_claim(&d, 500, 50) == 0);
    CHECK(gears_region_attach(&c, path, 0, 0, 500) == 0 && gears_region_claim(&c, 500, 50) == 0);
    CHECK(gears_region_attach(&e, path, 0, 0, 500) == 0);
    CHECK(gears_region_claim(&e, 400, 50) != 0); /* a, b, c and d are alive */
    gears_region_detach(&e);
    gears_region_detach(&c);
  }
  gears_region_detach(&a);
  gears_region_detach(&b);
  gears_region_detach(&d);
  unlink(path);

  /* a version this code does not speak is refused; garbage in the state word is refused */
  make_file(size);
  CHECK(gears_region_attach(&a, path, 0, 0, 500) == 0);
  a.hdr->version = 99;
  CHECK(gears_region_attach(&b, path, 0, 0, 500) != 0 && strstr(b.err, "version") != NULL);
  a.hdr->state = 0x1234;
  CHECK(gears_region_attach(&b, path, 0, 0, 500) != 0);
  gears_region_detach(&a);
  unlink(path);

  /* an initialiser that died half-way (state INIT|nonce forever) is taken over */
  make_file(size);
  fd = open(path, O_RDWR);
  {
    uint64_t stuck = GEARS_MPI_STATE_INIT | 0x1234;
    CHECK(pwrite(fd, &stuck, 8, offsetof(struct gears_mpi_region_hdr, state)) == 8);
  }
  close(fd);
  CHECK(gears_region_attach(&a, path, 0, 2, 200) == 0 && a.initialised_here && a.layout.slot_count == 2);
  gears_region_detach(&a);
  unlink(path);

  /* too small for any ring */
  make_file(64 * 1024);
  CHECK(gears_region_attach(&a, path, 0, 0, 200) != 0);
  unlink(path);

  if (failures) {
    fprintf(stderr, "gears_ring_check: %d check(s) failed\n", failures);
    return 1;
  }
  printf("gears_ring_check: OK (region init/validate, claim/release/reclaim, init takeover, FIFO over wrap, "
         "full ring, corrupt entries dropped)\n");
  return 0;
}
