/* Memory shared between co-located VMs (gears-vmm --shm name=NAME,size=SIZE[,path=FILE]):
 * how a guest finds a region. The single definition, used by gears-vmm (which describes the
 * region in ACPI) and by the guest-kernel runtime (which looks it up). doc/shm.md. */
#ifndef GEARS_ABI_SHM_H
#define GEARS_ABI_SHM_H

/* The ACPI device of a region: _HID GEARS_SHM_ACPI_HID, _UID the region's name (a string),
 * _CRS one QWord memory range (fixed, cacheable, read-write) above the guest's RAM. */
#define GEARS_SHM_ACPI_HID "GEAR0001"

/* A region's name: 1..GEARS_SHM_NAME_MAX characters of [a-z0-9_-]. */
#define GEARS_SHM_NAME_MAX 31

/* Regions are sized and placed in multiples of this (2 MiB). */
#define GEARS_SHM_ALIGN (2ULL << 20)

#endif /* GEARS_ABI_SHM_H */
