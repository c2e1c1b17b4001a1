/* The gears guest-kernel runtime: the part of <gears/kernel.h> that is the same for every
 * service. gearsc carries a copy of this file (embedded when gearsc is built) and writes it
 * next to each kernel half's generated glue; kbuild links it into the service's module.
 * Like the glue it is C and the only other file of a kernel half that includes Linux headers.
 *
 * Shared regions: memory gears-vmm shares between co-located VMs (--shm name=NAME, doc/shm.md)
 * is an ACPI device with _HID GEARS_SHM_ACPI_HID, _UID NAME and one memory range. A service
 * finds it by name, and may expose it to user space as the character device /dev/gears-NAME
 * (mmap of the range, lseek(fd, 0, SEEK_END) gives its size) until the module is unloaded. */
#include <linux/acpi.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>

#include <gears/kernel.h>

int gears_k_shared_region(const char *name, unsigned long long *gpa, unsigned long long *size)
{
	struct acpi_device *adev;
	struct resource_entry *entry;
	LIST_HEAD(resources);
	int ret = -ENOENT;

	if (!name || !gpa || !size)
		return -EINVAL;
	adev = acpi_dev_get_first_match_dev(GEARS_SHM_ACPI_HID, name, -1);
	if (!adev)
		return -ENOENT;
	if (acpi_dev_get_resources(adev, &resources, NULL, NULL) >= 0) {
		list_for_each_entry(entry, &resources, node) {
			if (resource_type(entry->res) != IORESOURCE_MEM || resource_size(entry->res) == 0)
				continue;
			*gpa = entry->res->start;
			*size = resource_size(entry->res);
			ret = 0;
			break;
		}
		acpi_dev_free_resource_list(&resources);
	}
	acpi_dev_put(adev);
	return ret;
}

struct gears_region_dev {
	struct miscdevice misc;
	char node[GEARS_SHM_NAME_MAX + 8]; /* "gears-" + name */
	phys_addr_t base;
	resource_size_t size;
};

#define GEARS_MAX_EXPOSED 8
static struct gears_region_dev *gears_exposed[GEARS_MAX_EXPOSED];
static DEFINE_MUTEX(gears_exposed_lock);

static struct gears_region_dev *gears_region_of(struct file *file)
{
	/* misc_open() leaves the miscdevice in private_data. */
	return container_of(file->private_data, struct gears_region_dev, misc);
}

static int gears_region_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct gears_region_dev *d = gears_region_of(file);

	/* Shared memory, never executable; vm_iomap_memory checks vm_pgoff + length against the
	 * region's size. */
	if (vma->vm_flags & VM_EXEC)
		return -EPERM;
	if (!(vma->vm_flags & VM_SHARED))
		return -EINVAL;
	return vm_iomap_memory(vma, d->base, d->size);
}

static loff_t gears_region_llseek(struct file *file, loff_t offset, int whence)
{
	return fixed_size_llseek(file, offset, whence, gears_region_of(file)->size);
}

static const struct file_operations gears_region_fops = {
	.owner = THIS_MODULE,
	.mmap = gears_region_mmap,
	.llseek = gears_region_llseek,
};

int gears_k_expose_shared_region(const char *name)
{
	unsigned long long gpa, size;
	struct gears_region_dev *d;
	int i, slot = -1, ret;

	if (!name || strnlen(name, GEARS_SHM_NAME_MAX + 1) > GEARS_SHM_NAME_MAX)
		return -EINVAL;
	ret = gears_k_shared_region(name, &gpa, &size);
	if (ret)
		return ret;
	mutex_lock(&gears_exposed_lock);
	for (i = 0; i < GEARS_MAX_EXPOSED; i++) {
		if (!gears_exposed[i]) {
			if (slot < 0)
				slot = i;
		} else if (strcmp(gears_exposed[i]->node + 6, name) == 0) {
			mutex_unlock(&gears_exposed_lock);
			return -EEXIST;
		}
	}
	ret = -ENOSPC;
	if (slot < 0)
		goto out;
	ret = -ENOMEM;
	d = kzalloc(sizeof(*d), GFP_KERNEL);
	if (!d)
		goto out;
	snprintf(d->node, sizeof(d->node), "gears-%s", name);
	d->base = gpa;
	d->size = size;
	d->misc.minor = MISC_DYNAMIC_MINOR;
	d->misc.name = d->node;
	d->misc.fops = &gears_region_fops;
	d->misc.mode = 0660;
	ret = misc_register(&d->misc);
	if (ret) {
		kfree(d);
		goto out;
	}
	gears_exposed[slot] = d;
	pr_info("gears: shared region %s (%llu MiB at %#llx) is /dev/%s\n", name, size >> 20, gpa, d->node);
out:
	mutex_unlock(&gears_exposed_lock);
	return ret;
}

/* Called by the glue when the module goes away (or its init fails). A process that still has
 * the region mapped keeps its mapping (the memory belongs to the VM, not to the module). */
void gears_k_runtime_exit(void)
{
	int i;

	mutex_lock(&gears_exposed_lock);
	for (i = 0; i < GEARS_MAX_EXPOSED; i++) {
		if (!gears_exposed[i])
			continue;
		misc_deregister(&gears_exposed[i]->misc);
		kfree(gears_exposed[i]);
		gears_exposed[i] = NULL;
	}
	mutex_unlock(&gears_exposed_lock);
}
