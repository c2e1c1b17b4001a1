/* btl_gears_region.c: attach/initialise/validate the gears region; claim, heartbeat, reclaim
 * and release slots (btl_gears_region.h, gears_mpi_region.h). */
#define _GNU_SOURCE 1
#include "btl_gears_region.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "btl_gears_ring.h"

static void set_err(struct gears_region *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(struct gears_region *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(r->err, sizeof r->err, fmt, ap);
  va_end(ap);
}

uint64_t gears_region_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Random bytes from the guest's own kernel; a clock/address mix if that fails (early boot). */
static void random_bytes(void *buf, size_t len) {
  unsigned char *p = buf;
  size_t got = 0;
  while (got < len) {
    ssize_t n = getrandom(p + got, len - got, 0);
    if (n > 0) {
      got += (size_t)n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      break;
    }
  }
  if (got < len) {
    struct timespec ts;
    uint64_t x;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    x = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)buf;
    for (; got < len; got++) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      p[got] = (unsigned char)x;
    }
  }
}

static uint64_t random_u64(void) {
  uint64_t v;
  random_bytes(&v, sizeof v);
  return v;
}

void gears_region_id_hex(const uint8_t id[16], char out[33]) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 0; i < 16; i++) {
    out[2 * i] = digits[id[i] >> 4];
    out[2 * i + 1] = digits[id[i] & 15];
  }
  out[32] = '\0';
}

/* We own state == nonce: lay the region out and publish READY. 0: done; 1: our nonce was taken
 * over meanwhile (go back to waiting); -1: this region cannot hold the asked slot count. */
static int initialise(struct gears_region *r, uint64_t nonce, uint32_t want_slots) {
  struct gears_mpi_region_hdr *h = r->hdr;
  struct gears_mpi_layout l;
  uint32_t slots = want_slots ? want_slots : gears_mpi_auto_slots(r->size);
  uint8_t id[16];
  uint64_t expect = nonce;
  if (gears_mpi_compute_layout(r->size, slots, &l) != 0) {
    __atomic_compare_exchange_n(&h->state, &expect, GEARS_MPI_STATE_EMPTY, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    set_err(r, "a region of %llu bytes cannot hold %u slots with rings of at least %u bytes",
            (unsigned long long)r->size, slots, GEARS_MPI_MIN_RING_BYTES);
    return -1;
  }
  random_bytes(id, sizeof id);
  h->magic = GEARS_MPI_REGION_MAGIC;
  h->version = GEARS_MPI_REGION_VERSION;
  h->hdr_bytes = (uint32_t)sizeof *h;
  h->size = r->size;
  memcpy(h->region_id, id, sizeof id);
  h->slot_count = l.slot_count;
  h->reserved0 = 0;
  h->ring_bytes = l.ring_bytes;
  h->ctl_offset = l.ctl_offset;
  h->data_offset = l.data_offset;
  memset(h->reserved, 0, sizeof h->reserved);
  memset(r->slots, 0, GEARS_MPI_MAX_SLOTS * sizeof *r->slots);
  memset(r->base + l.ctl_offset, 0, (size_t)(l.data_offset - l.ctl_offset));
  if (!__atomic_compare_exchange_n(&h->state, &expect, GEARS_MPI_STATE_READY, 0, __ATOMIC_RELEASE,
                                   __ATOMIC_RELAXED))
    return 1;
  r->initialised_here = 1;
  return 0;
}

/* The region is READY: check it against what we compute, keep private copies. */
static int validate(struct gears_region *r) {
  const struct gears_mpi_region_hdr *h = r->hdr;
  uint64_t magic = __atomic_load_n(&h->magic, __ATOMIC_RELAXED);
  uint32_t version = __atomic_load_n(&h->version, __ATOMIC_RELAXED);
  uint32_t hdr_bytes = __atomic_load_n(&h->hdr_bytes, __ATOMIC_RELAXED);
  uint64_t size = __atomic_load_n(&h->size, __ATOMIC_RELAXED);
  uint32_t slots = __atomic_load_n(&h->slot_count, __ATOMIC_RELAXED);
  struct gears_mpi_layout l;
  if (magic != GEARS_MPI_REGION_MAGIC || hdr_bytes != sizeof *h) {
    set_err(r, "not a gears-mpi region (magic %#llx)", (unsigned long long)magic);
    return -1;
  }
  if (version != GEARS_MPI_REGION_VERSION) {
    set_err(r, "region version %u, this component speaks %u", version, GEARS_MPI_REGION_VERSION);
    return -1;
  }
  if (size != r->size) {
    set_err(r, "region was initialised with size %llu, mapped size is %llu", (unsigned long long)size,
            (unsigned long long)r->size);
    return -1;
  }
  if (gears_mpi_compute_layout(size, slots, &l) != 0 ||
      l.ring_bytes != __atomic_load_n(&h->ring_bytes, __ATOMIC_RELAXED) ||
      l.ctl_offset != __atomic_load_n(&h->ctl_offset, __ATOMIC_RELAXED) ||
      l.data_offset != __atomic_load_n(&h->data_offset, __ATOMIC_RELAXED)) {
    set_err(r, "region layout is inconsistent (%u slots)", slots);
    return -1;
  }
  r->layout = l;
  for (int i = 0; i < 16; i++) r->id[i] = __atomic_load_n(&h->region_id[i], __ATOMIC_RELAXED);
  return 0;
}

int gears_region_attach(struct gears_region *r, const char *path, uint64_t size_override, uint32_t want_slots,
                        uint32_t init_wait_ms) {
  struct stat st;
  off_t end;
  void *base;
  int fd;
  uint64_t seen = GEARS_MPI_STATE_EMPTY, seen_since = 0;
  memset(r, 0, sizeof *r);
  if (path == NULL || *path == '\0') {
    set_err(r, "no region path");
    return -1;
  }
  fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    set_err(r, "open %s: %s", path, strerror(errno));
    return -1;
  }
  if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISCHR(st.st_mode))) {
    set_err(r, "%s is not a regular file or character device", path);
    close(fd);
    return -1;
  }
  end = lseek(fd, 0, SEEK_END); /* the device answers its size here (doc/shm.md) */
  r->size = size_override ? size_override : (end > 0 ? (uint64_t)end : 0);
  if (r->size == 0 || (S_ISREG(st.st_mode) && (uint64_t)st.st_size < r->size)) {
    set_err(r, "%s: size %llu unusable (file size %lld)", path, (unsigned long long)r->size, (long long)end);
    close(fd);
    return -1;
  }
  if (r->size < GEARS_MPI_CTL_OFFSET || r->size > (uint64_t)SIZE_MAX) {
    set_err(r, "%s: region of %llu bytes is too small", path, (unsigned long long)r->size);
    close(fd);
    return -1;
  }
  base = mmap(NULL, (size_t)r->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (base == MAP_FAILED) {
    set_err(r, "mmap %s (%llu bytes): %s", path, (unsigned long long)r->size, strerror(errno));
    return -1;
  }
  r->base = base;
  r->hdr = (struct gears_mpi_region_hdr *)base;
  r->slots = (struct gears_mpi_slot *)(void *)(r->base + GEARS_MPI_SLOTS_OFFSET);
  for (;;) {
    uint64_t state = __atomic_load_n(&r->hdr->state, __ATOMIC_ACQUIRE);
    if (state == GEARS_MPI_STATE_READY) {
      if (validate(r) == 0) return 0;
      break;
    }
    if (state == GEARS_MPI_STATE_EMPTY || (state & GEARS_MPI_STATE_INIT) == GEARS_MPI_STATE_INIT) {
      uint64_t mine = GEARS_MPI_STATE_INIT | (random_u64() >> 1) | 1u;
      int take = state == GEARS_MPI_STATE_EMPTY;
      if (!take) { /* someone is initialising: wait; presume it dead after init_wait_ms */
        if (state != seen) {
          seen = state;
          seen_since = gears_region_now_ms();
        } else if (gears_region_now_ms() - seen_since >= init_wait_ms) {
          take = 1;
        }
      }
      if (take) {
        uint64_t expect = state;
        if (__atomic_compare_exchange_n(&r->hdr->state, &expect, mine, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
          int rc = initialise(r, mine, want_slots);
          if (rc < 0) break;
          continue; /* 0: READY now (validated next round); 1: taken over, wait again */
        }
        continue;
      }
      sleep_ms(1);
      continue;
    }
    set_err(r, "not a gears-mpi region (state word %#llx)", (unsigned long long)state);
    break;
  }
  munmap(r->base, (size_t)r->size);
  r->base = NULL;
  r->hdr = NULL;
  r->slots = NULL;
  return -1;
}

static int try_free_slot(struct gears_region *r, uint64_t token) {
  for (uint32_t s = 0; s < r->layout.slot_count; s++) {
    uint64_t expect = 0;
    if (__atomic_load_n(&r->slots[s].token, __ATOMIC_RELAXED) != 0) continue;
    if (__atomic_compare_exchange_n(&r->slots[s].token, &expect, token, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
      return (int)s;
  }
  return -1;
}

static void *heartbeat_main(void *arg) {
  struct gears_region *r = arg;
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals stay with the application's threads */
  pthread_mutex_lock(&r->hb_mutex);
  while (!r->hb_stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += (long)(r->hb_period_ms % 1000u) * 1000000L;
    until.tv_sec += r->hb_period_ms / 1000u + until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_cond_timedwait(&r->hb_cond, &r->hb_mutex, &until);
    if (r->hb_stop) break;
    __atomic_fetch_add(&r->slots[r->slot].heartbeat, 1, __ATOMIC_RELAXED);
  }
  pthread_mutex_unlock(&r->hb_mutex);
  return NULL;
}

int gears_region_claim(struct gears_region *r, uint32_t reclaim_ms, uint32_t hb_period_ms) {
  uint64_t token;
  uint64_t snap_token[GEARS_MPI_MAX_SLOTS], snap_hb[GEARS_MPI_MAX_SLOTS];
  uint32_t n = r->layout.slot_count;
  int s;
  pthread_condattr_t ca;
  do token = random_u64();
  while (token == 0);
  s = try_free_slot(r, token);
  if (s < 0) {
    /* Full. A slot whose heartbeat does not move for reclaim_ms belongs to a dead process (its
     * VM or job was killed before it could release it): take it over. Live owners advance
     * their heartbeat every hb_period_ms from a thread of their own, whatever MPI does. */
    uint64_t start = gears_region_now_ms();
    for (uint32_t i = 0; i < n; i++) {
      snap_token[i] = __atomic_load_n(&r->slots[i].token, __ATOMIC_ACQUIRE);
      snap_hb[i] = __atomic_load_n(&r->slots[i].heartbeat, __ATOMIC_ACQUIRE);
    }
    while (s < 0 && gears_region_now_ms() - start < reclaim_ms) {
      sleep_ms(50);
      s = try_free_slot(r, token);
    }
    for (uint32_t i = 0; s < 0 && i < n; i++) {
      uint64_t t = __atomic_load_n(&r->slots[i].token, __ATOMIC_ACQUIRE);
      if (t == 0 || t != snap_token[i] || __atomic_load_n(&r->slots[i].heartbeat, __ATOMIC_ACQUIRE) != snap_hb[i])
        continue;
      if (__atomic_compare_exchange_n(&r->slots[i].token, &t, token, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
        s = (int)i;
        r->reclaimed = 1;
      }
    }
    if (s < 0) {
      set_err(r, "all %u slots are held by live processes", n);
      return -1;
    }
  }
  r->slot = (uint32_t)s;
  r->token = token;
  r->have_slot = 1;
  __atomic_fetch_add(&r->slots[s].generation, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&r->slots[s].heartbeat, 1, __ATOMIC_RELAXED);
  /* Nobody can know this slot yet (it is published only after this returns): start every ring
   * to or from it empty, whatever a previous owner left. */
  for (uint32_t p = 0; p < n; p++) {
    if (p == r->slot) continue;
    gears_ring_reset(gears_region_ctl(r, r->slot, p));
    gears_ring_reset(gears_region_ctl(r, p, r->slot));
  }
  r->hb_period_ms = hb_period_ms ? hb_period_ms : 100;
  pthread_mutex_init(&r->hb_mutex, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->hb_cond, &ca);
  pthread_condattr_destroy(&ca);
  r->hb_stop = 0;
  if (pthread_create(&r->hb_thread, NULL, heartbeat_main, r) != 0) {
    set_err(r, "cannot start the heartbeat thread");
    pthread_cond_destroy(&r->hb_cond);
    pthread_mutex_destroy(&r->hb_mutex);
    uint64_t expect = token;
    __atomic_compare_exchange_n(&r->slots[s].token, &expect, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    r->have_slot = 0;
    return -1;
  }
  r->hb_running = 1;
  return 0;
}

int gears_region_slot_held(const struct gears_region *r, uint32_t s, uint64_t token) {
  if (r->base == NULL || s >= r->layout.slot_count || token == 0) return 0;
  return __atomic_load_n(&r->slots[s].token, __ATOMIC_ACQUIRE) == token;
}

void gears_region_detach(struct gears_region *r) {
  if (r->hb_running) {
    pthread_mutex_lock(&r->hb_mutex);
    r->hb_stop = 1;
    pthread_cond_signal(&r->hb_cond);
    pthread_mutex_unlock(&r->hb_mutex);
    pthread_join(r->hb_thread, NULL);
    pthread_cond_destroy(&r->hb_cond);
    pthread_mutex_destroy(&r->hb_mutex);
    r->hb_running = 0;
  }
  if (r->have_slot) {
    uint64_t expect = r->token;
    /* only if still ours: a slot taken over while we were stalled belongs to its new owner */
    __atomic_compare_exchange_n(&r->slots[r->slot].token, &expect, 0, 0, __ATOMIC_RELEASE, __ATOMIC_RELAXED);
    r->have_slot = 0;
  }
  if (r->base != NULL) {
    munmap(r->base, (size_t)r->size);
    r->base = NULL;
    r->hdr = NULL;
    r->slots = NULL;
  }
}
