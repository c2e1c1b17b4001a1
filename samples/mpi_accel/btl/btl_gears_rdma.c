/* btl_gears_rdma.c: the one-copy path (doc/mpi-accel.md, "One copy"): ob1's RDMA get over
 * /dev/gears-mpi-rdma. The sender's buffer is registered with the guest kernel (pinned, and
 * published by its VMM under a cookie); the handle ob1 carries in its RGET header is (VM group
 * member, key, cookie, base address). The receiver's btl_get asks its own guest kernel to have
 * the VMM copy the range straight from the sender VM's RAM into the receive buffer: one copy,
 * one exit on each side per message, instead of two copies through the ring.
 *
 * Completion is synchronous: the ioctl returns when the bytes are in place, and the callback
 * is made before btl_get returns (as vader's single-copy paths do). A failed copy returns
 * OPAL_ERROR without the callback: ob1 then has the sender send that range (the ring path). */
#include "btl_gears.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "opal/util/output.h"

int mca_btl_gears_rdma_open(const char *device) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  struct gears_rdma_info info;
  int fd = open(device, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    opal_output_verbose(1, c->output, "btl_gears: one-copy path off: %s: %s", device, strerror(errno));
    return -1;
  }
  memset(&info, 0, sizeof info);
  if (ioctl(fd, GEARS_RDMA_IOC_INFO, &info) != 0 || info.member >= GEARS_MPI_RDMA_MEMBERS || info.max_len == 0) {
    opal_output_verbose(1, c->output, "btl_gears: one-copy path off: %s does not answer as expected", device);
    close(fd);
    return -1;
  }
  c->rdma_fd = fd;
  c->rdma_member = info.member;
  c->rdma_max_len = info.max_len;
  return 0;
}

void mca_btl_gears_rdma_close(void) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  if (c->rdma_fd >= 0) close(c->rdma_fd); /* the guest kernel withdraws what is left */
  c->rdma_fd = -1;
}

struct mca_btl_base_registration_handle_t *mca_btl_gears_register_mem(struct mca_btl_base_module_t *btl,
                                                                      struct mca_btl_base_endpoint_t *endpoint,
                                                                      void *base, size_t size, uint32_t flags) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  mca_btl_base_registration_handle_t *h;
  struct gears_rdma_reg reg;
  (void)btl, (void)endpoint;
  if (c->rdma_fd < 0) return NULL;
  /* A buffer peers read from is published; one this process only writes into (the receiver's
   * side of a get) needs nothing: its pages are pinned for the copy itself. */
  if (!(flags & MCA_BTL_REG_FLAG_REMOTE_READ)) {
    h = (mca_btl_base_registration_handle_t *)calloc(1, sizeof *h);
    if (h) h->member = UINT32_MAX;
    return h;
  }
  /* Below the crossover the ring is faster than pinning, publishing and an exit: NULL makes
   * ob1 send the message (rendezvous through the ring). */
  if (size < c->get_min || size > c->rdma_max_len) return NULL;
  memset(&reg, 0, sizeof reg);
  reg.addr = (uint64_t)(uintptr_t)base;
  reg.len = size;
  if (ioctl(c->rdma_fd, GEARS_RDMA_IOC_REG, &reg) != 0) {
    c->rdma_failed++;
    return NULL;
  }
  h = (mca_btl_base_registration_handle_t *)malloc(sizeof *h);
  if (NULL == h) {
    struct gears_rdma_dereg d = {.key = reg.key, .cookie = reg.cookie};
    (void)ioctl(c->rdma_fd, GEARS_RDMA_IOC_DEREG, &d);
    return NULL;
  }
  h->member = c->rdma_member;
  h->key = reg.key;
  h->cookie = reg.cookie;
  h->base = reg.addr;
  c->rdma_registered++;
  return h;
}

int mca_btl_gears_deregister_mem(struct mca_btl_base_module_t *btl, struct mca_btl_base_registration_handle_t *handle) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  (void)btl;
  if (NULL == handle) return OPAL_SUCCESS;
  if (handle->member != UINT32_MAX && c->rdma_fd >= 0) {
    struct gears_rdma_dereg d = {.key = handle->key, .cookie = handle->cookie};
    (void)ioctl(c->rdma_fd, GEARS_RDMA_IOC_DEREG, &d);
  }
  free(handle);
  return OPAL_SUCCESS;
}

int mca_btl_gears_get(struct mca_btl_base_module_t *btl, struct mca_btl_base_endpoint_t *endpoint, void *local_address,
                      uint64_t remote_address, struct mca_btl_base_registration_handle_t *local_handle,
                      struct mca_btl_base_registration_handle_t *remote_handle, size_t size, int flags, int order,
                      mca_btl_base_rdma_completion_fn_t cbfunc, void *cbcontext, void *cbdata) {
  mca_btl_gears_component_t *c = &mca_btl_gears_component;
  struct gears_rdma_get g;
  (void)flags, (void)order;
  /* The handle came over the wire from a peer: checked here, and again by the VMM. */
  if (c->rdma_fd < 0 || NULL == remote_handle || remote_handle->member >= GEARS_MPI_RDMA_MEMBERS ||
      remote_address < remote_handle->base || size == 0) {
    c->rdma_failed++;
    return OPAL_ERROR;
  }
  memset(&g, 0, sizeof g);
  g.member = remote_handle->member;
  g.key = remote_handle->key;
  g.cookie = remote_handle->cookie;
  g.offset = remote_address - remote_handle->base;
  g.addr = (uint64_t)(uintptr_t)local_address;
  g.len = size;
  if (ioctl(c->rdma_fd, GEARS_RDMA_IOC_GET, &g) != 0) {
    c->rdma_failed++;
    opal_output_verbose(1, c->output, "btl_gears: one-copy get of %zu bytes failed: %s (ob1 sends it instead)", size,
                        strerror(errno));
    return OPAL_ERROR;
  }
  c->rdma_gets++;
  c->rdma_bytes += size;
  cbfunc(btl, endpoint, local_address, local_handle, cbcontext, cbdata, OPAL_SUCCESS);
  return OPAL_SUCCESS;
}
