/* gears ABI: the service bundle file (one file: manifest + the three halves).
 *
 * Layout, all integers little-endian:
 *   struct gears_bundle_header                       at offset 0
 *   struct gears_bundle_entry[header.entry_count]    right after the header (the TOC)
 *   blobs                                            each at entry.offset, 8-byte aligned
 * A reader checks: magic, version, entry_count <= GEARS_BUNDLE_MAX_ENTRIES, every blob inside
 * the file and not overlapping the header/TOC, NUL-terminated names, and each blob's CRC-32
 * (IEEE 802.3, the zlib polynomial). Exactly one entry of kind MANIFEST. */
#ifndef GEARS_ABI_BUNDLE_H
#define GEARS_ABI_BUNDLE_H

#include <stdint.h>

#define GEARS_BUNDLE_MAGIC "GEARSBDL"
#define GEARS_BUNDLE_VERSION 1u
#define GEARS_BUNDLE_MAX_ENTRIES 16u
#define GEARS_BUNDLE_NAME_LEN 48u

enum gears_bundle_kind {
  GEARS_BUNDLE_MANIFEST = 1,     /* manifest JSON (abi/manifest.h) */
  GEARS_BUNDLE_VMM_HALF = 2,     /* shared plugin loaded by gears-vmm */
  GEARS_BUNDLE_USER_HALF = 3,    /* shared library preloaded into guest processes */
  GEARS_BUNDLE_KERNEL_HALF = 4,  /* kernel module (.ko) for the guest kernel */
};

struct gears_bundle_header {
  char magic[8];          /* GEARS_BUNDLE_MAGIC, not NUL-terminated */
  uint32_t version;       /* GEARS_BUNDLE_VERSION */
  uint32_t entry_count;
  uint64_t file_size;     /* whole file, for truncation checks */
};

struct gears_bundle_entry {
  uint32_t kind;          /* enum gears_bundle_kind */
  uint32_t crc32;
  uint64_t offset;
  uint64_t size;
  char name[GEARS_BUNDLE_NAME_LEN]; /* file name, NUL-terminated */
};

#ifdef __cplusplus
static_assert(sizeof(struct gears_bundle_header) == 24, "bundle header layout");
static_assert(sizeof(struct gears_bundle_entry) == 72, "bundle entry layout");
#endif

#endif /* GEARS_ABI_BUNDLE_H */
