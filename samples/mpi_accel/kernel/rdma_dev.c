// SPDX-License-Identifier: GPL-2.0
/* mpi-accel, guest-kernel side of the one-copy path (doc/mpi-accel.md, "One copy"):
 * /dev/gears-mpi-rdma. A process registers a buffer (its pages are pinned, their guest-physical
 * extents listed in kernel memory and announced to the VMM, which publishes them under a cookie
 * for the VMs of the group), and asks for a copy out of a peer VM's registration into its own
 * buffer (pinned for the copy; the VMM copies once, from the peer VM's RAM into this VM's).
 * Registrations belong to the open file: closing it (a process that exits or dies) withdraws
 * them before the pages are unpinned, so the VMM never copies out of a page the guest reused. */
#include <linux/fs.h>
#include <linux/io.h>
#include <linux/list.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/uaccess.h>

#include "btl/gears_mpi_rdma.h"

int mpi_rdma_start(long (*reg)(unsigned long long, unsigned long long, unsigned long long, unsigned long long),
		   long (*dereg)(unsigned long long, unsigned long long),
		   long (*get)(unsigned long long, unsigned long long, unsigned long long, unsigned long long,
			       unsigned long long),
		   long member);
void mpi_rdma_stop(void);

/* The C++ half's hypercall stubs (mpi_accel.cpp). */
static long (*vmm_reg)(unsigned long long, unsigned long long, unsigned long long, unsigned long long);
static long (*vmm_dereg)(unsigned long long, unsigned long long);
static long (*vmm_get)(unsigned long long, unsigned long long, unsigned long long, unsigned long long,
		       unsigned long long);
static u32 rdma_member;
static bool rdma_registered;

/* Pinned pages and the extent list the VMM reads (physically contiguous: kmalloc). */
struct pinned {
	struct page **pages;
	unsigned long npages;
	struct gears_rdma_extent *extents;
	unsigned long nextents;
};

struct registration {
	struct list_head link;
	u32 key;
	u64 cookie;
	struct pinned pin;
};

struct rdma_file {
	struct mutex lock;
	struct list_head regs;
};

static void unpin(struct pinned *p, bool dirty)
{
	if (p->pages) {
		unpin_user_pages_dirty_lock(p->pages, p->npages, dirty);
		kvfree(p->pages);
	}
	kfree(p->extents);
	memset(p, 0, sizeof(*p));
}

/* Pins [addr, addr+len) and lists its pages as guest-physical extents, merging neighbours. */
static int pin(u64 addr, u64 len, bool write, struct pinned *p)
{
	unsigned long first = addr >> PAGE_SHIFT, i;
	long got;

	memset(p, 0, sizeof(*p));
	if (len == 0 || len > GEARS_MPI_RDMA_MAX_LEN || addr + len < addr)
		return -EINVAL;
	p->npages = ((addr + len - 1) >> PAGE_SHIFT) - first + 1;
	p->pages = kvmalloc_array(p->npages, sizeof(*p->pages), GFP_KERNEL);
	p->extents = kmalloc_array(p->npages, sizeof(*p->extents), GFP_KERNEL);
	if (!p->pages || !p->extents) {
		kvfree(p->pages);
		kfree(p->extents);
		memset(p, 0, sizeof(*p));
		return -ENOMEM;
	}
	got = pin_user_pages_fast(addr & PAGE_MASK, p->npages, write ? FOLL_WRITE : 0, p->pages);
	if (got != (long)p->npages) {
		if (got > 0)
			unpin_user_pages(p->pages, got);
		kvfree(p->pages);
		kfree(p->extents);
		memset(p, 0, sizeof(*p));
		return got < 0 ? (int)got : -EFAULT;
	}
	for (i = 0; i < p->npages; i++) {
		u64 start = page_to_phys(p->pages[i]), end = start + PAGE_SIZE;
		struct gears_rdma_extent *last = p->nextents ? &p->extents[p->nextents - 1] : NULL;

		if (i == 0)
			start += offset_in_page(addr);
		if (i == p->npages - 1)
			end = page_to_phys(p->pages[i]) + offset_in_page(addr + len - 1) + 1;
		if (last && last->gpa + last->len == start) {
			last->len += end - start;
		} else {
			p->extents[p->nextents].gpa = start;
			p->extents[p->nextents].len = end - start;
			p->nextents++;
		}
	}
	return 0;
}

static long do_reg(struct rdma_file *f, struct gears_rdma_reg __user *uarg)
{
	struct gears_rdma_reg arg;
	struct registration *r;
	long key;
	int err;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	err = pin(arg.addr, arg.len, false, &r->pin);
	if (err)
		goto free;
	key = vmm_reg(virt_to_phys(r->pin.extents), r->pin.nextents, arg.len, virt_to_phys(&r->cookie));
	if (key < 0) {
		err = (int)key;
		goto unpin;
	}
	r->key = (u32)key;
	arg.key = r->key;
	arg.cookie = r->cookie;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		err = -EFAULT;
		vmm_dereg(r->key, r->cookie);
		goto unpin;
	}
	mutex_lock(&f->lock);
	list_add(&r->link, &f->regs);
	mutex_unlock(&f->lock);
	return 0;
unpin:
	unpin(&r->pin, false);
free:
	kfree(r);
	return err;
}

/* Withdraws the registration from the VMM first: only then may its pages be unpinned. */
static void drop(struct registration *r)
{
	vmm_dereg(r->key, r->cookie);
	unpin(&r->pin, false);
	kfree(r);
}

static long do_dereg(struct rdma_file *f, struct gears_rdma_dereg __user *uarg)
{
	struct gears_rdma_dereg arg;
	struct registration *r, *found = NULL;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	mutex_lock(&f->lock);
	list_for_each_entry(r, &f->regs, link) {
		if (r->key == arg.key && r->cookie == arg.cookie) {
			list_del(&r->link);
			found = r;
			break;
		}
	}
	mutex_unlock(&f->lock);
	if (!found)
		return -ENOENT;
	drop(found);
	return 0;
}

static long do_get(struct gears_rdma_get __user *uarg)
{
	struct gears_rdma_get arg;
	struct pinned p;
	long copied;
	int err;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	if (arg.member >= GEARS_MPI_RDMA_MEMBERS)
		return -EINVAL;
	err = pin(arg.addr, arg.len, true, &p);
	if (err)
		return err;
	copied = vmm_get(((u64)arg.member << 32) | arg.key, arg.cookie, arg.offset, virt_to_phys(p.extents),
			 p.nextents);
	unpin(&p, copied > 0);
	if (copied < 0)
		return copied;
	return copied == (long)arg.len ? 0 : -EIO;
}

static long rdma_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct rdma_file *f = file->private_data;
	struct gears_rdma_info info = { .member = rdma_member, .max_len = GEARS_MPI_RDMA_MAX_LEN };

	switch (cmd) {
	case GEARS_RDMA_IOC_INFO:
		return copy_to_user((void __user *)arg, &info, sizeof(info)) ? -EFAULT : 0;
	case GEARS_RDMA_IOC_REG:
		return do_reg(f, (struct gears_rdma_reg __user *)arg);
	case GEARS_RDMA_IOC_DEREG:
		return do_dereg(f, (struct gears_rdma_dereg __user *)arg);
	case GEARS_RDMA_IOC_GET:
		return do_get((struct gears_rdma_get __user *)arg);
	default:
		return -ENOTTY;
	}
}

static int rdma_open(struct inode *inode, struct file *file)
{
	struct rdma_file *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (!f)
		return -ENOMEM;
	mutex_init(&f->lock);
	INIT_LIST_HEAD(&f->regs);
	file->private_data = f;
	return 0;
}

static int rdma_release(struct inode *inode, struct file *file)
{
	struct rdma_file *f = file->private_data;
	struct registration *r, *tmp;

	list_for_each_entry_safe(r, tmp, &f->regs, link) {
		list_del(&r->link);
		drop(r);
	}
	kfree(f);
	return 0;
}

static const struct file_operations rdma_fops = {
	.owner = THIS_MODULE,
	.open = rdma_open,
	.release = rdma_release,
	.unlocked_ioctl = rdma_ioctl,
};

static struct miscdevice rdma_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "gears-mpi-rdma",
	.fops = &rdma_fops,
	.mode = 0660,
};

int mpi_rdma_start(long (*reg)(unsigned long long, unsigned long long, unsigned long long, unsigned long long),
		   long (*dereg)(unsigned long long, unsigned long long),
		   long (*get)(unsigned long long, unsigned long long, unsigned long long, unsigned long long,
			       unsigned long long),
		   long member)
{
	int err;

	if (member < 0 || member >= GEARS_MPI_RDMA_MEMBERS)
		return -ENODEV;
	vmm_reg = reg;
	vmm_dereg = dereg;
	vmm_get = get;
	rdma_member = (u32)member;
	err = misc_register(&rdma_misc);
	rdma_registered = err == 0;
	return err;
}

void mpi_rdma_stop(void)
{
	if (rdma_registered)
		misc_deregister(&rdma_misc);
	rdma_registered = false;
}
