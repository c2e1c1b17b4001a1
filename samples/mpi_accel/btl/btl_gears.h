/* btl_gears.h: the Open MPI 4.1 BTL component `gears` (BTL API 3.1.0, btl.h of Open MPI 4.1.x).
 *
 * It moves point-to-point fragments between ranks through ONE shared memory region that every
 * rank maps (btl_gears_region, default /dev/gears-mpi: memory gears-vmm shares between VMs on
 * one host; a /dev/shm file on a host). Peers may live in different VMs: nothing but this memory
 * is assumed to be shared (no kernel, pids, hostnames, futexes, CMA/xpmem).
 *
 * Files: btl_gears_component.c (params, open/close, init: attach + claim + modex; progress),
 * btl_gears_module.c (add/del_procs, alloc/free/prepare_src, send/sendi, finalize),
 * btl_gears_region.c (region attach/initialise, slots, heartbeat, reclaim),
 * btl_gears_ring.c (the lock-free SPSC rings), gears_mpi_region.h (the layout, plain C),
 * btl_gears_rdma.c (the one-copy path: register_mem / get over /dev/gears-mpi-rdma,
 * gears_mpi_rdma.h).
 */
#ifndef MCA_BTL_GEARS_H
#define MCA_BTL_GEARS_H

#include "opal_config.h"

#include "opal/class/opal_free_list.h"
#include "opal/class/opal_list.h"
#include "opal/mca/btl/base/base.h"
#include "opal/mca/btl/btl.h"
#include "opal/threads/mutex.h"
#include "opal/util/proc.h"

#include "btl_gears_region.h"
#include "btl_gears_ring.h"
#include "gears_mpi_rdma.h"

BEGIN_C_DECLS

/* What each process publishes through the modex (key: this component's name and version). */
typedef struct mca_btl_gears_modex_t {
  uint8_t region_id[16];
  uint32_t slot;
  uint32_t slot_count;
  uint64_t token; /* the slot's token: the claim must still stand when a peer adds us */
  uint32_t layout_version;
  uint32_t reserved;
} mca_btl_gears_modex_t;

/* What ob1 carries in its RGET header for a registered send buffer (fixed size, no pointer):
 * which VM published it, under which key and cookie, and the address it starts at. member
 * UINT32_MAX: a local handle (a receive buffer), nothing published. */
struct mca_btl_base_registration_handle_t {
  uint32_t member;
  uint32_t key;
  uint64_t cookie;
  uint64_t base;
};

/* One peer (another process in a slot of the same region). */
struct mca_btl_base_endpoint_t {
  opal_list_item_t super;      /* on the component's list of endpoints with pending frags */
  struct opal_proc_t *proc;
  uint32_t peer_slot;
  uint64_t peer_token;
  struct gears_ring_tx *tx;    /* ring (my slot -> peer_slot); protected by lock */
  opal_list_t pending;         /* frags waiting for ring space, in send order (FIFO) */
  bool waiting;                /* on mca_btl_gears_component.pending_endpoints */
  bool reported_dead;          /* the error callback was made for it */
  uint64_t hb_seen;            /* the peer slot's heartbeat when last seen moving ... */
  uint64_t hb_seen_ms;         /* ... and when (monotonic ms) */
  opal_mutex_t lock;
};
typedef struct mca_btl_base_endpoint_t mca_btl_base_endpoint_t;
typedef mca_btl_base_endpoint_t mca_btl_gears_endpoint_t;
OBJ_CLASS_DECLARATION(mca_btl_gears_endpoint_t);

/* A send descriptor. segments[0] is the frag's own buffer (header, or header + packed data);
 * segments[1], when used, points at the user's contiguous data (in-place send). */
typedef struct mca_btl_gears_frag_t {
  mca_btl_base_descriptor_t base;
  mca_btl_base_segment_t segments[2];
  struct mca_btl_base_endpoint_t *endpoint;
  opal_free_list_t *list;
  size_t capacity;
  uint8_t tag;
  unsigned char *data;
} mca_btl_gears_frag_t;
OBJ_CLASS_DECLARATION(mca_btl_gears_frag_t);

typedef struct mca_btl_gears_component_t {
  mca_btl_base_component_t super;
  /* parameters */
  char *region_path;
  unsigned long region_size;    /* 0: the file's / device's size */
  unsigned int slots;           /* slot count when this process initialises the region; 0 auto */
  unsigned int reclaim_timeout; /* seconds a dead slot's heartbeat must stand still */
  unsigned int heartbeat_ms;
  unsigned int peer_timeout;    /* seconds a live peer's heartbeat may stand still; 0: never */
  int verbose;
  int free_list_num, free_list_max, free_list_inc;
  int rdma;                     /* use the one-copy path where the device is there */
  char *rdma_device;
  unsigned long get_min;        /* smaller messages take the ring */
  int output; /* opal_output stream for verbose messages */
  /* state */
  bool attached;
  bool progress_registered;
  struct gears_region region;
  opal_free_list_t frags_eager; /* eager_limit bytes */
  opal_free_list_t frags_max;   /* max_send_size bytes */
  struct gears_ring_tx tx[GEARS_MPI_MAX_SLOTS]; /* by peer slot */
  struct gears_ring_rx rx[GEARS_MPI_MAX_SLOTS]; /* by peer slot (all slots are polled) */
  mca_btl_gears_endpoint_t *endpoints[GEARS_MPI_MAX_SLOTS];
  /* Inbound rings polled at every progress call: those of peers added so far. Every
   * GEARS_FULL_SCAN_EVERY calls all other slots' rings are polled too (a peer may send before
   * it is added here). */
  uint32_t known[GEARS_MPI_MAX_SLOTS];
  volatile uint32_t nknown;
  uint32_t poll_count;
  opal_list_t pending_endpoints; /* endpoints with frags waiting for ring space */
  opal_list_t done;              /* frags in the ring, completion callback not made yet */
  opal_mutex_t lock;             /* pending_endpoints, done */
  volatile int32_t progressing;
  uint64_t pending_events; /* sends that found their ring full */
  mca_btl_base_module_error_cb_fn_t error_cb; /* ob1's, for a peer that is gone */
  uint64_t next_liveness_ms;
  uint64_t peers_lost;
  uint32_t liveness_polls; /* the liveness check runs every 1024 progress calls */
  /* the one-copy path (btl_gears_rdma.c); rdma_fd -1: off */
  int rdma_fd;
  uint32_t rdma_member;
  uint64_t rdma_max_len;
  uint64_t rdma_registered, rdma_gets, rdma_bytes, rdma_failed;
} mca_btl_gears_component_t;

OPAL_MODULE_DECLSPEC extern mca_btl_gears_component_t mca_btl_gears_component;
extern mca_btl_base_module_t mca_btl_gears;

#define GEARS_FULL_SCAN_EVERY 16u

int mca_btl_gears_progress(void);
/* Start / stop polling peer_slot's ring at every progress call. */
void mca_btl_gears_poll_add(uint32_t peer_slot);
void mca_btl_gears_poll_remove(uint32_t peer_slot);
/* Write frags queued on ep while their ring was full; returns how many left the queue.
 * Caller holds nothing; takes ep->lock. */
int mca_btl_gears_flush_pending(mca_btl_gears_endpoint_t *ep);
/* Peers whose VM or process vanished while still holding their slot (heartbeat stopped, token
 * unchanged) are reported to ob1 (its error callback: the job ends with an error instead of
 * waiting forever for their messages). A peer that left cleanly cleared its token: not an error.
 * Called from progress every 1024 calls; one clock read, the scan about once a second. */
void mca_btl_gears_check_peers(void);
/* Fire completion callbacks of frags that are in the ring. */
int mca_btl_gears_complete_done(void);
/* The one-copy path: open the device (0, or -1 with the reason logged at verbose 1), close it. */
int mca_btl_gears_rdma_open(const char *device);
void mca_btl_gears_rdma_close(void);
struct mca_btl_base_registration_handle_t *mca_btl_gears_register_mem(struct mca_btl_base_module_t *btl,
                                                                      struct mca_btl_base_endpoint_t *endpoint,
                                                                      void *base, size_t size, uint32_t flags);
int mca_btl_gears_deregister_mem(struct mca_btl_base_module_t *btl, struct mca_btl_base_registration_handle_t *handle);
int mca_btl_gears_get(struct mca_btl_base_module_t *btl, struct mca_btl_base_endpoint_t *endpoint, void *local_address,
                      uint64_t remote_address, struct mca_btl_base_registration_handle_t *local_handle,
                      struct mca_btl_base_registration_handle_t *remote_handle, size_t size, int flags, int order,
                      mca_btl_base_rdma_completion_fn_t cbfunc, void *cbcontext, void *cbdata);
/* Print the counters (btl_gears_verbose > 0) and release everything (module finalize). */
void mca_btl_gears_report_and_release(void);

END_C_DECLS

#endif /* MCA_BTL_GEARS_H */
