/* btl_gears_module.c: the `gears` BTL module: add_procs/del_procs (peers that published the same
 * region id in the modex), alloc/free/prepare_src, send/sendi (copy into the peer's ring),
 * completions, finalize. */
#include "btl_gears.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "opal/class/opal_bitmap.h"
#include "opal/datatype/opal_convertor.h"
#include "opal/mca/pmix/pmix.h"
#include "opal/runtime/opal_progress.h"
#include "opal/util/output.h"

/* ---------------------------------------------------------------- classes */

static void endpoint_construct(mca_btl_gears_endpoint_t *ep) {
  ep->proc = NULL;
  ep->peer_slot = UINT32_MAX;
  ep->peer_token = 0;
  ep->reported_dead = false;
  ep->hb_seen = 0;
  ep->hb_seen_ms = 0;
  ep->tx = NULL;
  ep->waiting = false;
  OBJ_CONSTRUCT(&ep->pending, opal_list_t);
  OBJ_CONSTRUCT(&ep->lock, opal_mutex_t);
}

static void endpoint_destruct(mca_btl_gears_endpoint_t *ep) {
  OBJ_DESTRUCT(&ep->pending);
  OBJ_DESTRUCT(&ep->lock);
}

OBJ_CLASS_INSTANCE(mca_btl_gears_endpoint_t, opal_list_item_t, endpoint_construct, endpoint_destruct);

static void frag_construct(mca_btl_gears_frag_t *frag) {
  frag->base.des_segments = frag->segments;
  frag->base.des_segment_count = 1;
  frag->endpoint = NULL;
  frag->list = NULL;
  frag->capacity = 0;
  frag->data = NULL;
  frag->tag = 0;
}

OBJ_CLASS_INSTANCE(mca_btl_gears_frag_t, mca_btl_base_descriptor_t, frag_construct, NULL);

/* ---------------------------------------------------------------- peers */

static int gears_add_procs(struct mca_btl_base_module_t *btl, size_t nprocs, struct opal_proc_t **procs,
                           struct mca_btl_base_endpoint_t **peers, opal_bitmap_t *reachable) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  const struct gears_region *r = &c->region;
  (void)btl;
  if (!c->attached) return OPAL_SUCCESS;
  for (size_t i = 0; i < nprocs; i++) {
    struct opal_proc_t *proc = procs[i];
    mca_btl_gears_modex_t *m = NULL, peer;
    size_t msize = 0;
    mca_btl_gears_endpoint_t *ep;
    int rc;
    if (0 == opal_compare_proc(proc->proc_name, OPAL_PROC_MY_NAME)) continue; /* btl self's */
    OPAL_MODEX_RECV(rc, &c->super.btl_version, &proc->proc_name, (void **)&m, &msize);
    if (OPAL_SUCCESS != rc || NULL == m) continue; /* no gears there: another BTL's peer */
    if (msize != sizeof peer) {
      free(m);
      opal_output_verbose(2, c->output, "btl_gears: %s published %zu bytes of modex, not %zu: not a peer",
                          OPAL_NAME_PRINT(proc->proc_name), msize, sizeof peer);
      continue;
    }
    memcpy(&peer, m, sizeof peer);
    free(m);
    if (0 != memcmp(peer.region_id, r->id, sizeof r->id)) {
      opal_output_verbose(2, c->output, "btl_gears: %s is attached to another region: not a peer",
                          OPAL_NAME_PRINT(proc->proc_name));
      continue;
    }
    if (peer.layout_version != GEARS_MPI_REGION_VERSION || peer.slot_count != r->layout.slot_count ||
        peer.slot >= r->layout.slot_count || peer.slot == r->slot || 0 == peer.token) {
      opal_output_verbose(1, c->output, "btl_gears: %s published an impossible slot %u/%u: not a peer",
                          OPAL_NAME_PRINT(proc->proc_name), peer.slot, peer.slot_count);
      continue;
    }
    if (!gears_region_slot_held(r, peer.slot, peer.token)) {
      opal_output_verbose(1, c->output, "btl_gears: %s no longer holds slot %u: not a peer",
                          OPAL_NAME_PRINT(proc->proc_name), peer.slot);
      continue;
    }
    ep = c->endpoints[peer.slot];
    if (NULL != ep) {
      if (0 != opal_compare_proc(ep->proc->proc_name, proc->proc_name) || ep->peer_token != peer.token) {
        opal_output_verbose(1, c->output, "btl_gears: %s claims slot %u of %s: not a peer",
                            OPAL_NAME_PRINT(proc->proc_name), peer.slot, OPAL_NAME_PRINT(ep->proc->proc_name));
        continue;
      }
      OBJ_RETAIN(ep); /* added again: one del_procs per add_procs */
    } else {
      ep = OBJ_NEW(mca_btl_gears_endpoint_t);
      if (NULL == ep) return OPAL_ERR_OUT_OF_RESOURCE;
      ep->proc = proc;
      ep->peer_slot = peer.slot;
      ep->peer_token = peer.token;
      ep->hb_seen = __atomic_load_n(&r->slots[peer.slot].heartbeat, __ATOMIC_ACQUIRE);
      ep->hb_seen_ms = gears_region_now_ms();
      ep->tx = &c->tx[peer.slot];
      c->endpoints[peer.slot] = ep;
      mca_btl_gears_poll_add(peer.slot);
      gears_ring_rx_watch(&c->rx[peer.slot], &r->slots[peer.slot].generation); /* its claim is the latest */
      opal_output_verbose(2, c->output, "btl_gears: slot %u reaches %s in slot %u", r->slot,
                          OPAL_NAME_PRINT(proc->proc_name), peer.slot);
    }
    peers[i] = ep;
    if (NULL != reachable) opal_bitmap_set_bit(reachable, (int)i);
  }
  return OPAL_SUCCESS;
}

/* Drop frags still queued on an endpoint (the peer is going away): no callback. */
static void endpoint_drop_pending(mca_btl_gears_endpoint_t *ep) {
  opal_list_item_t *item;
  OPAL_THREAD_LOCK(&ep->lock);
  while (NULL != (item = opal_list_remove_first(&ep->pending))) {
    mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)item;
    if (frag->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP)
      opal_free_list_return(frag->list, &frag->base.super);
  }
  OPAL_THREAD_UNLOCK(&ep->lock);
}

static void endpoint_forget(mca_btl_gears_endpoint_t *ep) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  OPAL_THREAD_LOCK(&c->lock);
  if (ep->waiting) {
    opal_list_item_t *item;
    OPAL_LIST_FOREACH(item, &c->pending_endpoints, opal_list_item_t) {
      if (item == &ep->super) {
        opal_list_remove_item(&c->pending_endpoints, item);
        break;
      }
    }
    ep->waiting = false;
  }
  OPAL_THREAD_UNLOCK(&c->lock);
  endpoint_drop_pending(ep);
}

static int gears_del_procs(struct mca_btl_base_module_t *btl, size_t nprocs, struct opal_proc_t **procs,
                           struct mca_btl_base_endpoint_t **peers) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  (void)btl;
  (void)procs;
  for (size_t i = 0; i < nprocs; i++) {
    mca_btl_gears_endpoint_t *ep = peers[i];
    if (NULL == ep) continue;
    if (ep->peer_slot < GEARS_MPI_MAX_SLOTS && c->endpoints[ep->peer_slot] == ep && 1 == ep->super.super.obj_reference_count) {
      c->endpoints[ep->peer_slot] = NULL;
      mca_btl_gears_poll_remove(ep->peer_slot);
      endpoint_forget(ep);
    }
    OBJ_RELEASE(ep);
  }
  return OPAL_SUCCESS;
}

/* ---------------------------------------------------------------- descriptors */

static mca_btl_base_descriptor_t *gears_alloc(struct mca_btl_base_module_t *btl,
                                              struct mca_btl_base_endpoint_t *endpoint, uint8_t order, size_t size,
                                              uint32_t flags) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  mca_btl_gears_frag_t *frag = NULL;
  (void)order;
  if (size <= btl->btl_eager_limit)
    frag = (mca_btl_gears_frag_t *)opal_free_list_get(&c->frags_eager);
  else if (size <= btl->btl_max_send_size)
    frag = (mca_btl_gears_frag_t *)opal_free_list_get(&c->frags_max);
  if (OPAL_UNLIKELY(NULL == frag)) return NULL;
  frag->segments[0].seg_addr.pval = frag->data;
  frag->segments[0].seg_len = size;
  frag->base.des_segments = frag->segments;
  frag->base.des_segment_count = 1;
  frag->base.des_flags = flags;
  frag->base.des_cbfunc = NULL;
  frag->base.des_cbdata = NULL;
  frag->base.des_context = NULL;
  frag->base.order = MCA_BTL_NO_ORDER;
  frag->endpoint = endpoint;
  return &frag->base;
}

static int gears_free(struct mca_btl_base_module_t *btl, mca_btl_base_descriptor_t *des) {
  mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)des;
  (void)btl;
  opal_free_list_return(frag->list, &des->super);
  return OPAL_SUCCESS;
}

/* `reserve` bytes of header in the frag, then *size bytes of data: packed into the frag when the
 * convertor needs it, else referenced in place (segment 1) and copied straight into the ring at
 * send time. The descriptor stays ours until the completion callback, so the user buffer does
 * too (ob1 completes the request from that callback). */
static mca_btl_base_descriptor_t *gears_prepare_src(struct mca_btl_base_module_t *btl,
                                                    struct mca_btl_base_endpoint_t *endpoint,
                                                    struct opal_convertor_t *convertor, uint8_t order, size_t reserve,
                                                    size_t *size, uint32_t flags) {
  mca_btl_gears_frag_t *frag;
  const bool in_place = !opal_convertor_need_buffers(convertor);
  if (reserve > btl->btl_max_send_size) return NULL;
  if (reserve + *size > btl->btl_max_send_size) *size = btl->btl_max_send_size - reserve;
  frag = (mca_btl_gears_frag_t *)gears_alloc(btl, endpoint, order, reserve + (in_place ? 0 : *size), flags);
  if (OPAL_UNLIKELY(NULL == frag)) return NULL;
  if (in_place) {
    void *data_ptr = NULL;
    frag->segments[0].seg_len = reserve;
    if (*size > 0) {
      opal_convertor_get_current_pointer(convertor, &data_ptr);
      frag->segments[1].seg_addr.pval = data_ptr;
      frag->segments[1].seg_len = *size;
      frag->base.des_segment_count = 2;
    }
  } else {
    struct iovec iov = {.iov_base = (IOVBASE_TYPE *)(frag->data + reserve), .iov_len = *size};
    uint32_t iov_count = 1;
    size_t max_data = *size;
    if (opal_convertor_pack(convertor, &iov, &iov_count, &max_data) < 0) {
      gears_free(btl, &frag->base);
      return NULL;
    }
    *size = max_data;
    frag->segments[0].seg_len = reserve + max_data;
  }
  return &frag->base;
}

/* ---------------------------------------------------------------- send */

/* Copy a frag into its peer's ring; false when the ring is full now. Caller holds ep->lock. */
static bool frag_to_ring(mca_btl_gears_endpoint_t *ep, mca_btl_gears_frag_t *frag) {
  size_t total = 0;
  unsigned char *dst;
  for (size_t s = 0; s < frag->base.des_segment_count; s++) total += frag->segments[s].seg_len;
  dst = gears_ring_reserve(ep->tx, total);
  if (NULL == dst) return false;
  for (size_t s = 0, off = 0; s < frag->base.des_segment_count; off += frag->segments[s].seg_len, s++)
    memcpy(dst + off, frag->segments[s].seg_addr.pval, frag->segments[s].seg_len);
  gears_ring_commit(ep->tx, dst, (uint32_t)total, frag->tag);
  return true;
}

static void done_append(mca_btl_gears_frag_t *frag) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  OPAL_THREAD_LOCK(&c->lock);
  opal_list_append(&c->done, &frag->base.super.super);
  OPAL_THREAD_UNLOCK(&c->lock);
}

/* Queue a frag behind the ones already waiting (per-peer FIFO). Caller holds ep->lock. */
static void pending_append(mca_btl_gears_endpoint_t *ep, mca_btl_gears_frag_t *frag) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  opal_list_append(&ep->pending, &frag->base.super.super);
  c->pending_events++;
  if (!ep->waiting) {
    ep->waiting = true;
    OPAL_THREAD_LOCK(&c->lock);
    opal_list_append(&c->pending_endpoints, &ep->super);
    OPAL_THREAD_UNLOCK(&c->lock);
  }
}

/* Completion semantics: the frag is copied into the ring (or queued) and OPAL_SUCCESS returned;
 * the completion callback always follows from progress, never from inside send (ob1 may
 * reenter the BTL from that callback), and a BTL-owned frag is freed after it. */
static int gears_send(struct mca_btl_base_module_t *btl, struct mca_btl_base_endpoint_t *endpoint,
                      struct mca_btl_base_descriptor_t *descriptor, mca_btl_base_tag_t tag) {
  mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)descriptor;
  (void)btl;
  frag->tag = tag;
  frag->endpoint = endpoint;
  descriptor->des_flags |= MCA_BTL_DES_SEND_ALWAYS_CALLBACK;
  OPAL_THREAD_LOCK(&endpoint->lock);
  if (opal_list_is_empty(&endpoint->pending) && frag_to_ring(endpoint, frag)) {
    OPAL_THREAD_UNLOCK(&endpoint->lock);
    done_append(frag);
    return OPAL_SUCCESS;
  }
  pending_append(endpoint, frag);
  OPAL_THREAD_UNLOCK(&endpoint->lock);
  return OPAL_SUCCESS;
}

/* Header + payload straight into the ring (the payload packed there when not contiguous); done
 * when this returns. When the ring is full, or frags of this peer are waiting (order), nothing
 * is sent and the caller falls back to alloc/send. */
static int gears_sendi(struct mca_btl_base_module_t *btl, struct mca_btl_base_endpoint_t *endpoint,
                       struct opal_convertor_t *convertor, void *header, size_t header_size, size_t payload_size,
                       uint8_t order, uint32_t flags, mca_btl_base_tag_t tag, mca_btl_base_descriptor_t **descriptor) {
  const size_t total = header_size + payload_size;
  unsigned char *dst;
  (void)order;
  (void)flags;
  if (NULL != descriptor) *descriptor = NULL;
  if (OPAL_UNLIKELY(total > btl->btl_max_send_size)) return OPAL_ERR_OUT_OF_RESOURCE;
  OPAL_THREAD_LOCK(&endpoint->lock);
  if (OPAL_UNLIKELY(!opal_list_is_empty(&endpoint->pending)) || NULL == (dst = gears_ring_reserve(endpoint->tx, total))) {
    OPAL_THREAD_UNLOCK(&endpoint->lock);
    return OPAL_ERR_OUT_OF_RESOURCE;
  }
  memcpy(dst, header, header_size);
  if (payload_size > 0) {
    if (!opal_convertor_need_buffers(convertor)) {
      void *data_ptr = NULL;
      opal_convertor_get_current_pointer(convertor, &data_ptr);
      memcpy(dst + header_size, data_ptr, payload_size);
    } else {
      struct iovec iov = {.iov_base = (IOVBASE_TYPE *)(dst + header_size), .iov_len = payload_size};
      uint32_t iov_count = 1;
      size_t max_data = payload_size;
      if (opal_convertor_pack(convertor, &iov, &iov_count, &max_data) < 0 || max_data != payload_size) {
        /* nothing was published: the reservation is simply not committed */
        OPAL_THREAD_UNLOCK(&endpoint->lock);
        return OPAL_ERROR;
      }
    }
  }
  gears_ring_commit(endpoint->tx, dst, (uint32_t)total, tag);
  OPAL_THREAD_UNLOCK(&endpoint->lock);
  return OPAL_SUCCESS;
}

int mca_btl_gears_flush_pending(mca_btl_gears_endpoint_t *ep) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  int moved = 0;
  OPAL_THREAD_LOCK(&ep->lock);
  while (!opal_list_is_empty(&ep->pending)) {
    mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)opal_list_get_first(&ep->pending);
    if (!frag_to_ring(ep, frag)) break;
    (void)opal_list_remove_first(&ep->pending);
    done_append(frag);
    moved++;
  }
  if (opal_list_is_empty(&ep->pending)) {
    ep->waiting = false;
  } else { /* still waiting: back on the list (progress took it off) */
    OPAL_THREAD_LOCK(&c->lock);
    opal_list_append(&c->pending_endpoints, &ep->super);
    OPAL_THREAD_UNLOCK(&c->lock);
  }
  OPAL_THREAD_UNLOCK(&ep->lock);
  return moved;
}

int mca_btl_gears_complete_done(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  size_t count;
  int completed = 0;
  OPAL_THREAD_LOCK(&c->lock);
  count = opal_list_get_size(&c->done);
  OPAL_THREAD_UNLOCK(&c->lock);
  /* only those queued now: a callback may send again, those complete next time */
  while (count-- > 0) {
    mca_btl_gears_frag_t *frag;
    int own;
    OPAL_THREAD_LOCK(&c->lock);
    frag = (mca_btl_gears_frag_t *)opal_list_remove_first(&c->done);
    OPAL_THREAD_UNLOCK(&c->lock);
    if (NULL == frag) break;
    own = frag->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP;
    if ((frag->base.des_flags & MCA_BTL_DES_SEND_ALWAYS_CALLBACK) && NULL != frag->base.des_cbfunc)
      frag->base.des_cbfunc(&mca_btl_gears, frag->endpoint, &frag->base, OPAL_SUCCESS);
    if (own) opal_free_list_return(frag->list, &frag->base.super);
    completed++;
  }
  return completed;
}

/* ---------------------------------------------------------------- peers that vanish */

static int gears_register_error(struct mca_btl_base_module_t *btl, mca_btl_base_module_error_cb_fn_t cbfunc) {
  (void)btl;
  mca_btl_gears_component.error_cb = cbfunc;
  return OPAL_SUCCESS;
}

void mca_btl_gears_check_peers(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  const struct gears_region *r = &c->region;
  const uint64_t now = gears_region_now_ms();
  if (0 == c->peer_timeout || now < c->next_liveness_ms) return;
  c->next_liveness_ms = now + 1000;
  for (uint32_t p = 0; p < r->layout.slot_count; p++) {
    mca_btl_gears_endpoint_t *ep = c->endpoints[p];
    uint64_t token, hb;
    if (NULL == ep || ep->reported_dead) continue;
    token = __atomic_load_n(&r->slots[p].token, __ATOMIC_ACQUIRE);
    hb = __atomic_load_n(&r->slots[p].heartbeat, __ATOMIC_ACQUIRE);
    if (token != ep->peer_token) continue; /* it left (finalize clears the token): not an error */
    if (hb != ep->hb_seen) {
      ep->hb_seen = hb;
      ep->hb_seen_ms = now;
      continue;
    }
    if (now - ep->hb_seen_ms < 1000ull * c->peer_timeout) continue;
    ep->reported_dead = true;
    c->peers_lost++;
    opal_output(0, "btl_gears: %s: peer %s (slot %u) stopped its heartbeat %u s ago without leaving: its VM or "
                   "process is gone",
                OPAL_NAME_PRINT(OPAL_PROC_MY_NAME), NULL != ep->proc ? OPAL_NAME_PRINT(ep->proc->proc_name) : "?", p,
                c->peer_timeout);
    if (NULL != c->error_cb)
      c->error_cb(&mca_btl_gears, MCA_BTL_ERROR_FLAGS_FATAL, ep->proc, "btl_gears: a peer's VM or process is gone");
  }
}

/* ---------------------------------------------------------------- finalize */

void mca_btl_gears_report_and_release(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  struct gears_region *r = &c->region;
  uint64_t sent = 0, sent_bytes = 0, recv = 0, recv_bytes = 0, dropped = 0, bad_tail = 0;
  opal_list_item_t *item;
  if (c->progress_registered) {
    opal_progress_unregister(mca_btl_gears_progress);
    c->progress_registered = false;
  }
  if (c->attached) {
    for (uint32_t p = 0; p < GEARS_MPI_MAX_SLOTS; p++) {
      if (NULL != c->endpoints[p]) { /* del_procs was not called for it */
        endpoint_forget(c->endpoints[p]);
        OBJ_RELEASE(c->endpoints[p]);
        c->endpoints[p] = NULL;
      }
      sent += c->tx[p].msgs;
      sent_bytes += c->tx[p].bytes;
      bad_tail += c->tx[p].bad_tail;
      recv += c->rx[p].msgs;
      recv_bytes += c->rx[p].bytes;
      dropped += c->rx[p].dropped;
    }
    /* frags in the ring whose callbacks never ran (finalize without progress): just recycle */
    while (NULL != (item = opal_list_remove_first(&c->done))) {
      mca_btl_gears_frag_t *frag = (mca_btl_gears_frag_t *)item;
      if (frag->base.des_flags & MCA_BTL_DES_FLAGS_BTL_OWNERSHIP)
        opal_free_list_return(frag->list, &frag->base.super);
    }
    if (c->verbose > 0) {
      fprintf(stderr,
              "btl_gears: %s slot %u: sent %llu msgs %llu bytes, received %llu msgs %llu bytes, "
              "dropped %llu corrupt, queued %llu on a full ring, bad peer tail %llu; one-copy: %s, "
              "%llu registered, %llu gets %llu bytes, %llu failed; %llu peers lost%s\n",
              OPAL_NAME_PRINT(OPAL_PROC_MY_NAME), r->slot, (unsigned long long)sent, (unsigned long long)sent_bytes,
              (unsigned long long)recv, (unsigned long long)recv_bytes, (unsigned long long)dropped,
              (unsigned long long)c->pending_events, (unsigned long long)bad_tail, c->rdma_fd >= 0 ? "on" : "off",
              (unsigned long long)c->rdma_registered, (unsigned long long)c->rdma_gets,
              (unsigned long long)c->rdma_bytes, (unsigned long long)c->rdma_failed,
              (unsigned long long)c->peers_lost, r->reclaimed ? " (slot taken over from a dead owner)" : "");
      fflush(stderr);
    }
    c->attached = false;
  }
  mca_btl_gears_rdma_close();
  gears_region_detach(r); /* heartbeat stopped, token cleared, unmapped; idempotent */
  memset(c->tx, 0, sizeof c->tx);
  memset(c->rx, 0, sizeof c->rx);
}

static int gears_finalize(struct mca_btl_base_module_t *btl) {
  (void)btl;
  mca_btl_gears_report_and_release();
  return OPAL_SUCCESS;
}

mca_btl_base_module_t mca_btl_gears = {
    .btl_component = &mca_btl_gears_component.super,
    .btl_add_procs = gears_add_procs,
    .btl_del_procs = gears_del_procs,
    .btl_finalize = gears_finalize,
    .btl_alloc = gears_alloc,
    .btl_free = gears_free,
    .btl_prepare_src = gears_prepare_src,
    .btl_send = gears_send,
    .btl_sendi = gears_sendi,
    .btl_put = NULL,
    .btl_get = mca_btl_gears_get, /* the one-copy path; init removes it without the device */
    .btl_register_mem = mca_btl_gears_register_mem,
    .btl_deregister_mem = mca_btl_gears_deregister_mem,
    .btl_dump = mca_btl_base_dump,
    .btl_register_error = gears_register_error,
};
