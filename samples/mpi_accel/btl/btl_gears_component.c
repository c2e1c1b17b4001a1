/* btl_gears_component.c: the `gears` BTL component: parameters, open/close, init (attach the
 * region, claim a slot, publish it through the modex) and the progress function that polls this
 * process's inbound rings. */
#include "btl_gears.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opal/mca/base/mca_base_var.h"
#include "opal/mca/pmix/pmix.h"
#include "opal/runtime/opal.h"
#include "opal/runtime/opal_progress.h"
#include "opal/util/output.h"

static int gears_component_register(void);
static int gears_component_open(void);
static int gears_component_close(void);
static mca_btl_base_module_t **gears_component_init(int *num_btls, bool enable_progress_threads,
                                                    bool enable_mpi_threads);

mca_btl_gears_component_t mca_btl_gears_component = {
    .super =
        {
            .btl_version =
                {
                    MCA_BTL_DEFAULT_VERSION("gears"),
                    .mca_open_component = gears_component_open,
                    .mca_close_component = gears_component_close,
                    .mca_register_component_params = gears_component_register,
                },
            .btl_data =
                {
                    .param_field = MCA_BASE_METADATA_PARAM_NONE,
                },
            .btl_init = gears_component_init,
            /* NULL on purpose: the bml registers a component's progress only once one of its
             * endpoints is in use, but a peer in another VM may send before this process has
             * added it (add_procs is lazy for non-local peers in 4.1). The component registers
             * mca_btl_gears_progress itself at init, so inbound rings are always polled. */
            .btl_progress = NULL,
        },
};

static int region_var_index = -1;
static const char *region_path_in_use;

static void register_uint(const char *name, const char *help, unsigned int *storage) {
  (void)mca_base_component_var_register(&mca_btl_gears_component.super.btl_version, name, help,
                                        MCA_BASE_VAR_TYPE_UNSIGNED_INT, NULL, 0, 0, OPAL_INFO_LVL_5,
                                        MCA_BASE_VAR_SCOPE_READONLY, storage);
}

static void register_int(const char *name, const char *help, int *storage) {
  (void)mca_base_component_var_register(&mca_btl_gears_component.super.btl_version, name, help,
                                        MCA_BASE_VAR_TYPE_INT, NULL, 0, 0, OPAL_INFO_LVL_5,
                                        MCA_BASE_VAR_SCOPE_READONLY, storage);
}

static int gears_component_register(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  mca_base_var_group_component_register(&c->super.btl_version,
                                         "BTL over one memory region shared between VMs (gears MPI accelerator)");

  c->region_path = "/dev/gears-mpi";
  region_var_index = mca_base_component_var_register(
      &c->super.btl_version, "region",
      "Path of the shared region every rank maps (the gears-mpi device in a guest, a /dev/shm file on a host). "
      "When this parameter is not set, the environment variable GEARS_MPI_REGION may name it.",
      MCA_BASE_VAR_TYPE_STRING, NULL, 0, 0, OPAL_INFO_LVL_3, MCA_BASE_VAR_SCOPE_READONLY, &c->region_path);
  c->region_size = 0;
  (void)mca_base_component_var_register(&c->super.btl_version, "region_size",
                                        "Bytes of the region to use (0: the size of the file or device)",
                                        MCA_BASE_VAR_TYPE_UNSIGNED_LONG, NULL, 0, 0, OPAL_INFO_LVL_5,
                                        MCA_BASE_VAR_SCOPE_READONLY, &c->region_size);
  c->slots = 0;
  register_uint("slots",
                "Slot count written into a fresh region by the process that initialises it (2-64; 0: from the "
                "region size, about one 256 KiB ring per pair)",
                &c->slots);
  c->reclaim_timeout = 10;
  register_uint("reclaim_timeout",
                "Seconds a claimed slot's heartbeat must stand still before a process that finds the region full "
                "takes the slot over (its owner died without releasing it)",
                &c->reclaim_timeout);
  c->heartbeat_ms = 100;
  register_uint("heartbeat_ms", "Milliseconds between two heartbeats of this process's slot", &c->heartbeat_ms);
  c->peer_timeout = 20;
  register_uint("peer_timeout",
                "Seconds a peer's heartbeat may stand still while it still holds its slot before it is reported "
                "to ob1 as gone (its VM was shut down or its process killed): the job then ends with an error "
                "instead of waiting for it forever; 0: never",
                &c->peer_timeout);
  c->verbose = 0;
  register_int("verbose",
               "Verbosity: 1 prints why the component disqualified itself and, at finalize, one line of counters "
               "per process; 2 adds per-peer decisions",
               &c->verbose);
  c->free_list_num = 8;
  register_int("free_list_num", "Initial fragments per free list", &c->free_list_num);
  c->free_list_max = 1024;
  register_int("free_list_max", "Maximum fragments per free list", &c->free_list_max);
  c->free_list_inc = 32;
  register_int("free_list_inc", "Fragments added to a free list at a time", &c->free_list_inc);

  c->rdma = 1;
  register_int("rdma",
               "Large messages by one copy done by the VMM between the VMs' memories (ob1's RDMA get over the "
               "guest kernel's one-copy device) where the device is there; 0: every message through the ring",
               &c->rdma);
  c->rdma_device = GEARS_MPI_RDMA_DEVICE;
  (void)mca_base_component_var_register(&c->super.btl_version, "rdma_device", "The one-copy path's device",
                                        MCA_BASE_VAR_TYPE_STRING, NULL, 0, 0, OPAL_INFO_LVL_5,
                                        MCA_BASE_VAR_SCOPE_READONLY, &c->rdma_device);
  c->get_min = 32 * 1024;
  (void)mca_base_component_var_register(&c->super.btl_version, "get_min",
                                        "Smallest message sent by one copy; smaller ones take the ring (the "
                                        "crossover measured by tests/bench/mpi-bench)",
                                        MCA_BASE_VAR_TYPE_UNSIGNED_LONG, NULL, 0, 0, OPAL_INFO_LVL_5,
                                        MCA_BASE_VAR_SCOPE_READONLY, &c->get_min);

  /* The usual BTL parameters (btl_gears_exclusivity, _eager_limit, _max_send_size, _flags, ...).
   * Fragments go through the ring; GET is the one-copy path (btl_gears_rdma.c), taken away at
   * init where the device is missing; no PUT. Exclusivity
   * is below vader (a peer in the same VM is better served by plain shared memory) and above tcp
   * and the network BTLs. max_send_size/eager limits are clamped at init to what a ring holds. */
  mca_btl_gears.btl_exclusivity = MCA_BTL_EXCLUSIVITY_HIGH - 1024;
  mca_btl_gears.btl_eager_limit = 4 * 1024;
  mca_btl_gears.btl_rndv_eager_limit = 32 * 1024;
  mca_btl_gears.btl_max_send_size = 64 * 1024;
  mca_btl_gears.btl_rdma_pipeline_send_length = 64 * 1024;
  mca_btl_gears.btl_rdma_pipeline_frag_size = 64 * 1024;
  mca_btl_gears.btl_min_rdma_pipeline_size = 0;
  mca_btl_gears.btl_flags = MCA_BTL_FLAGS_SEND | MCA_BTL_FLAGS_SEND_INPLACE | MCA_BTL_FLAGS_GET;
  mca_btl_gears.btl_get_limit = GEARS_MPI_RDMA_MAX_LEN;
  mca_btl_gears.btl_registration_handle_size = sizeof(mca_btl_base_registration_handle_t);
  mca_btl_gears.btl_latency = 1;
  mca_btl_gears.btl_bandwidth = 8000;
  return mca_btl_base_param_register(&c->super.btl_version, &mca_btl_gears);
}

static int gears_component_open(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  c->attached = false;
  c->progress_registered = false;
  c->progressing = 0;
  c->pending_events = 0;
  c->error_cb = NULL;
  c->next_liveness_ms = 0;
  c->peers_lost = 0;
  c->liveness_polls = 0;
  c->rdma_fd = -1;
  c->rdma_registered = c->rdma_gets = c->rdma_bytes = c->rdma_failed = 0;
  memset(&c->region, 0, sizeof c->region);
  memset(c->tx, 0, sizeof c->tx);
  memset(c->rx, 0, sizeof c->rx);
  memset(c->endpoints, 0, sizeof c->endpoints);
  c->nknown = 0;
  c->poll_count = 0;
  OBJ_CONSTRUCT(&c->frags_eager, opal_free_list_t);
  OBJ_CONSTRUCT(&c->frags_max, opal_free_list_t);
  OBJ_CONSTRUCT(&c->pending_endpoints, opal_list_t);
  OBJ_CONSTRUCT(&c->done, opal_list_t);
  OBJ_CONSTRUCT(&c->lock, opal_mutex_t);
  c->output = opal_output_open(NULL);
  opal_output_set_verbosity(c->output, c->verbose);
  return OPAL_SUCCESS;
}

static int gears_component_close(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  mca_btl_gears_report_and_release(); /* no-op when the module finalize did it */
  OBJ_DESTRUCT(&c->frags_eager);
  OBJ_DESTRUCT(&c->frags_max);
  OBJ_DESTRUCT(&c->pending_endpoints);
  OBJ_DESTRUCT(&c->done);
  OBJ_DESTRUCT(&c->lock);
  opal_output_close(c->output);
  return OPAL_SUCCESS;
}

/* The region path: the MCA parameter when it is set (any source but the default), else
 * GEARS_MPI_REGION from the environment, else the default /dev/gears-mpi. */
static const char *region_path(void) {
  mca_base_var_source_t source = MCA_BASE_VAR_SOURCE_DEFAULT;
  const char *env = getenv("GEARS_MPI_REGION");
  if (region_var_index >= 0) (void)mca_base_var_get_value(region_var_index, NULL, &source, NULL);
  if (source == MCA_BASE_VAR_SOURCE_DEFAULT && env != NULL && *env != '\0') return env;
  return mca_btl_gears_component.region_path;
}

typedef struct {
  opal_free_list_t *list;
  size_t capacity;
} frag_list_ctx_t;
static frag_list_ctx_t eager_ctx, max_ctx;

static int frag_item_init(opal_free_list_item_t *item, void *ctx) {
  mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)item;
  const frag_list_ctx_t *fc = ctx;
  frag->list = fc->list;
  frag->capacity = fc->capacity;
  frag->data = (unsigned char *)(frag + 1);
  return OPAL_SUCCESS;
}

static int init_free_list(opal_free_list_t *list, frag_list_ctx_t *ctx, size_t capacity) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  ctx->list = list;
  ctx->capacity = capacity;
  return opal_free_list_init(list, sizeof(mca_btl_gears_frag_t) + capacity, opal_cache_line_size,
                             OBJ_CLASS(mca_btl_gears_frag_t), 0, opal_cache_line_size, c->free_list_num,
                             c->free_list_max, c->free_list_inc, NULL, 0, NULL, frag_item_init, ctx);
}

static mca_btl_base_module_t **gears_component_init(int *num_btls, bool enable_progress_threads,
                                                    bool enable_mpi_threads) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  struct gears_region *r = &c->region;
  mca_btl_base_module_t **btls;
  mca_btl_gears_modex_t modex;
  uint64_t max_payload;
  char idhex[33];
  int rc;
  (void)enable_progress_threads;
  (void)enable_mpi_threads;
  *num_btls = 0;
  opal_output_set_verbosity(c->output, c->verbose);

  region_path_in_use = region_path();
  /* Disqualify quietly (verbose only) when the region is absent or unusable: Open MPI then uses
   * its other BTLs and the job runs unchanged. */
  if (gears_region_attach(r, region_path_in_use, c->region_size, c->slots, 1000u * c->reclaim_timeout) != 0) {
    opal_output_verbose(1, c->output, "btl_gears: disqualified: %s", r->err);
    return NULL;
  }
  if (gears_region_claim(r, 1000u * c->reclaim_timeout, c->heartbeat_ms) != 0) {
    opal_output_verbose(1, c->output, "btl_gears: disqualified: %s: %s", region_path_in_use, r->err);
    gears_region_detach(r);
    return NULL;
  }

  /* Fragments must fit a ring entry (a quarter of a ring); the limits follow the region. */
  max_payload = gears_mpi_max_payload(r->layout.ring_bytes);
  if (mca_btl_gears.btl_max_send_size > max_payload) mca_btl_gears.btl_max_send_size = max_payload;
  if (mca_btl_gears.btl_eager_limit > mca_btl_gears.btl_max_send_size)
    mca_btl_gears.btl_eager_limit = mca_btl_gears.btl_max_send_size;
  if (mca_btl_gears.btl_rndv_eager_limit > mca_btl_gears.btl_max_send_size)
    mca_btl_gears.btl_rndv_eager_limit = mca_btl_gears.btl_max_send_size;
  if (mca_btl_gears.btl_eager_limit < 256) {
    opal_output_verbose(1, c->output, "btl_gears: disqualified: eager limit %zu too small",
                        mca_btl_gears.btl_eager_limit);
    gears_region_detach(r);
    return NULL;
  }
  mca_btl_gears.btl_flags &= ~(uint32_t)MCA_BTL_FLAGS_PUT;
  c->rdma_fd = -1;
  if (!c->rdma || !(mca_btl_gears.btl_flags & MCA_BTL_FLAGS_GET) || mca_btl_gears_rdma_open(c->rdma_device) != 0) {
    /* No one-copy path: every message through the ring (ob1 uses its send protocols). */
    mca_btl_gears.btl_flags &= ~(uint32_t)MCA_BTL_FLAGS_RDMA;
    mca_btl_gears.btl_get = NULL;
    mca_btl_gears.btl_register_mem = NULL;
    mca_btl_gears.btl_deregister_mem = NULL;
    mca_btl_gears.btl_registration_handle_size = 0;
  } else if (mca_btl_gears.btl_get_limit == 0 || mca_btl_gears.btl_get_limit > c->rdma_max_len) {
    mca_btl_gears.btl_get_limit = c->rdma_max_len;
  }

  for (uint32_t p = 0; p < r->layout.slot_count; p++) {
    if (p == r->slot) continue;
    gears_ring_tx_init(&c->tx[p], gears_region_ctl(r, r->slot, p), gears_region_ring_data(r, r->slot, p),
                       r->layout.ring_bytes);
    gears_ring_rx_init(&c->rx[p], gears_region_ctl(r, p, r->slot), gears_region_ring_data(r, p, r->slot),
                       r->layout.ring_bytes);
    gears_ring_rx_watch(&c->rx[p], &r->slots[p].generation);
  }

  if (OPAL_SUCCESS != init_free_list(&c->frags_eager, &eager_ctx, mca_btl_gears.btl_eager_limit) ||
      OPAL_SUCCESS != init_free_list(&c->frags_max, &max_ctx, mca_btl_gears.btl_max_send_size)) {
    opal_output_verbose(1, c->output, "btl_gears: disqualified: cannot create the fragment lists");
    gears_region_detach(r);
    return NULL;
  }

  memset(&modex, 0, sizeof modex);
  memcpy(modex.region_id, r->id, sizeof modex.region_id);
  modex.slot = r->slot;
  modex.slot_count = r->layout.slot_count;
  modex.token = r->token;
  modex.layout_version = GEARS_MPI_REGION_VERSION;
  OPAL_MODEX_SEND(rc, OPAL_PMIX_GLOBAL, &c->super.btl_version, &modex, sizeof modex);
  if (OPAL_SUCCESS != rc) {
    opal_output_verbose(1, c->output, "btl_gears: disqualified: modex send failed (%d)", rc);
    gears_region_detach(r);
    return NULL;
  }

  btls = (mca_btl_base_module_t **)malloc(sizeof *btls);
  if (NULL == btls) {
    gears_region_detach(r);
    return NULL;
  }
  btls[0] = &mca_btl_gears;
  *num_btls = 1;
  c->attached = true;
  opal_progress_register(mca_btl_gears_progress);
  c->progress_registered = true;

  gears_region_id_hex(r->id, idhex);
  opal_output_verbose(2, c->output,
                      "btl_gears: %s: region %s (%s), %u slots, rings of %llu bytes; slot %u%s; "
                      "eager %zu, max send %zu",
                      region_path_in_use, idhex, r->initialised_here ? "initialised here" : "attached",
                      r->layout.slot_count, (unsigned long long)r->layout.ring_bytes, r->slot,
                      r->reclaimed ? " (taken over from a dead owner)" : "", mca_btl_gears.btl_eager_limit,
                      mca_btl_gears.btl_max_send_size);
  return btls;
}

/* ---------------------------------------------------------------- progress */

void mca_btl_gears_poll_add(uint32_t peer_slot) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  uint32_t n = c->nknown;
  for (uint32_t i = 0; i < n; i++)
    if (c->known[i] == peer_slot) return;
  if (n >= GEARS_MPI_MAX_SLOTS) return;
  c->known[n] = peer_slot;
  __atomic_store_n(&c->nknown, n + 1, __ATOMIC_RELEASE); /* add_procs may run inside progress */
}

void mca_btl_gears_poll_remove(uint32_t peer_slot) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  uint32_t n = c->nknown;
  for (uint32_t i = 0; i < n; i++)
    if (c->known[i] == peer_slot) {
      c->known[i] = c->known[n - 1];
      __atomic_store_n(&c->nknown, n - 1, __ATOMIC_RELEASE);
      return;
    }
}

/* One inbound ring entry -> the active-message callback registered for its tag (ob1's). The
 * descriptor lives on the stack; its segment points into the ring and is valid until return. */
static int gears_deliver(void *ctx, uint8_t tag, const void *payload, uint32_t len) {
  const mca_btl_active_message_callback_t *reg;
  mca_btl_base_segment_t seg;
  mca_btl_base_descriptor_t des = {.des_segments = &seg, .des_segment_count = 1, .order = MCA_BTL_NO_ORDER};
  (void)ctx;
  if (tag >= MCA_BTL_TAG_MAX) return -1;
  reg = mca_btl_base_active_message_trigger + tag;
  if (NULL == reg->cbfunc) return -1; /* nobody listens on this tag: count it as dropped */
  seg.seg_addr.pval = (void *)(uintptr_t)payload;
  seg.seg_len = len;
  reg->cbfunc(&mca_btl_gears, tag, &des, reg->cbdata);
  return 0;
}

int mca_btl_gears_progress(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  const uint32_t me = c->region.slot, n = c->region.layout.slot_count;
  int events = 0;
  if (!c->attached) return 0;
  /* one poller at a time (each ring has one consumer); a nested or concurrent call returns */
  if (opal_using_threads()) {
    int32_t idle = 0;
    if (!__atomic_compare_exchange_n(&c->progressing, &idle, 1, 0, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) return 0;
  } else {
    if (c->progressing) return 0;
    c->progressing = 1;
  }
  /* The rings of known peers every time; every other slot's ring to us now and then, and
   * always while no peer is known: a peer may send before we have added it (add_procs is lazy
   * for peers on other nodes / in other VMs); ob1 finds the sender from its own header. */
  if (c->nknown == 0 || ++c->poll_count % GEARS_FULL_SCAN_EVERY == 0) {
    for (uint32_t p = 0; p < n; p++) {
      if (p == me || !gears_ring_rx_pending(&c->rx[p])) continue;
      events += gears_ring_poll(&c->rx[p], 64, gears_deliver, NULL);
    }
  } else {
    for (uint32_t i = 0; i < c->nknown; i++) {
      const uint32_t p = c->known[i];
      if (!gears_ring_rx_pending(&c->rx[p])) continue;
      events += gears_ring_poll(&c->rx[p], 64, gears_deliver, NULL);
    }
  }
  if (!opal_list_is_empty(&c->pending_endpoints)) {
    size_t count;
    OPAL_THREAD_LOCK(&c->lock);
    count = opal_list_get_size(&c->pending_endpoints);
    OPAL_THREAD_UNLOCK(&c->lock);
    while (count-- > 0) {
      mca_btl_gears_endpoint_t *ep;
      OPAL_THREAD_LOCK(&c->lock);
      ep = (mca_btl_gears_endpoint_t *)opal_list_remove_first(&c->pending_endpoints);
      OPAL_THREAD_UNLOCK(&c->lock);
      if (NULL == ep) break;
      events += mca_btl_gears_flush_pending(ep);
    }
  }
  if (!opal_list_is_empty(&c->done)) events += mca_btl_gears_complete_done();
  if ((++c->liveness_polls & 1023u) == 0) mca_btl_gears_check_peers();
  if (opal_using_threads())
    __atomic_store_n(&c->progressing, 0, __ATOMIC_RELEASE);
  else
    c->progressing = 0;
  return events;
}
