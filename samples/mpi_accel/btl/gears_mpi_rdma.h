/* gears_mpi_rdma.h: the one-copy path of the MPI accelerator (doc/mpi-accel.md, "One copy"),
 * shared by its three halves: the guest kernel's /dev/gears-mpi-rdma (ioctls below), the BTL
 * (btl_register_mem / btl_get) and the VMM half (the registration table and the copy).
 *
 * A sender's process registers its buffer: the guest kernel pins the pages and hands the VMM a
 * list of guest-physical extents; its VMM publishes (list address, count, length) under a
 * fresh random cookie in the VM group's VMM-only area (no guest can forge an entry there) and
 * answers (member, key, cookie). The receiver's process asks its own VMM, through its guest
 * kernel, to copy [offset, offset+len) of registration (member, key, cookie) into its own
 * pinned pages: the VMM checks the cookie, reads the extent list from the sender VM's RAM and
 * copies once, from the sender VM's RAM into the receiver VM's RAM. One exit on each side.
 * Plain C, no libc beyond <stdint.h>. */
#ifndef GEARS_MPI_RDMA_H
#define GEARS_MPI_RDMA_H

#ifdef __KERNEL__
#include <linux/ioctl.h>
#include <linux/types.h>
typedef u32 gears_rdma_u32;
typedef u64 gears_rdma_u64;
#else
#include <stdint.h>
#include <sys/ioctl.h>
typedef uint32_t gears_rdma_u32;
typedef uint64_t gears_rdma_u64;
#endif

#define GEARS_MPI_RDMA_DEVICE "/dev/gears-mpi-rdma"
#define GEARS_MPI_RDMA_MAX_LEN (16ull << 20)       /* bytes per registration and per get */
#define GEARS_MPI_RDMA_MAX_EXTENTS ((GEARS_MPI_RDMA_MAX_LEN >> 12) + 1)
#define GEARS_MPI_RDMA_KEYS 2048u                    /* registrations per VM at once */
#define GEARS_MPI_RDMA_ENTRY_SIZE 32u                /* VMM table entry: cookie, list, count, len */
#define GEARS_MPI_RDMA_MEMBERS 16u                   /* VM group members (gears/vmm/vm_group.h) */

/* One physically contiguous piece of a pinned buffer, in the list the guest kernel keeps. */
struct gears_rdma_extent {
  gears_rdma_u64 gpa;
  gears_rdma_u64 len;
};

struct gears_rdma_info {   /* GEARS_RDMA_IOC_INFO: out */
  gears_rdma_u32 member;   /* this VM's member number in the group */
  gears_rdma_u32 reserved;
  gears_rdma_u64 max_len;  /* GEARS_MPI_RDMA_MAX_LEN */
};

struct gears_rdma_reg {    /* GEARS_RDMA_IOC_REG: in addr, len; out key, cookie */
  gears_rdma_u64 addr;
  gears_rdma_u64 len;
  gears_rdma_u32 key;
  gears_rdma_u32 reserved;
  gears_rdma_u64 cookie;
};

struct gears_rdma_dereg {  /* GEARS_RDMA_IOC_DEREG: in */
  gears_rdma_u32 key;
  gears_rdma_u32 reserved;
  gears_rdma_u64 cookie;
};

struct gears_rdma_get {    /* GEARS_RDMA_IOC_GET: in; copies len bytes into [addr, addr+len) */
  gears_rdma_u32 member;
  gears_rdma_u32 key;
  gears_rdma_u64 cookie;
  gears_rdma_u64 offset;   /* into the registration */
  gears_rdma_u64 addr;
  gears_rdma_u64 len;
};

#define GEARS_RDMA_IOC_INFO _IOR('g', 1, struct gears_rdma_info)
#define GEARS_RDMA_IOC_REG _IOWR('g', 2, struct gears_rdma_reg)
#define GEARS_RDMA_IOC_DEREG _IOW('g', 3, struct gears_rdma_dereg)
#define GEARS_RDMA_IOC_GET _IOW('g', 4, struct gears_rdma_get)

#endif /* GEARS_MPI_RDMA_H */
