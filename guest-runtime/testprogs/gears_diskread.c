// gears-diskread: the guest side of the disk tests and benchmark (tests/integration/disk,
// tests/bench/disk-bench, doc/disk.md). One process, one pattern, on a raw block device with
// O_DIRECT (no page cache, no readahead: every read(2) is one request the VMM sees, issued
// from this process's address space):
//
//   gears-diskread NAME DEV seq START_MIB MIB       read MIB sequentially from START_MIB
//   gears-diskread NAME DEV random START_MIB MIB    read MIB in chunks at random offsets
//                                                   (seeded by NAME) across the whole device
//   gears-diskread NAME DEV verify START_MIB MIB    write a pattern naming NAME and each
//                                                   chunk, fdatasync, read it back, compare
//
// Prints "GEARS-DISKREAD NAME pid=P mode=M bytes=B ns=T mb_s=X ok=0|1" when done: the
// ground truth the checks compare the VMM's per-process statistics with. Exit 0 when ok.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <time.h>
#include <unistd.h>

enum { kChunk = 128 * 1024 };  // Linux's default readahead: what a buffered reader would ask for

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int full_io(int fd, int write, void* buf, uint64_t off) {
  size_t done = 0;
  while (done < kChunk) {
    ssize_t n = write ? pwrite(fd, (char*)buf + done, kChunk - done, (off_t)(off + done))
                      : pread(fd, (char*)buf + done, kChunk - done, (off_t)(off + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += (size_t)n;
  }
  return 0;
}

static void fill(char* buf, const char* name, uint64_t chunk) {
  memset(buf, 0, kChunk);
  for (size_t at = 0; at + 64 <= kChunk; at += 64)
    snprintf(buf + at, 64, "gears-diskread %s chunk %llu at %zu", name, (unsigned long long)chunk, at);
}

int main(int argc, char** argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: gears-diskread NAME DEV seq|random|verify START_MIB MIB\n");
    return 2;
  }
  const char *name = argv[1], *dev = argv[2], *mode = argv[3];
  const uint64_t start = strtoull(argv[4], NULL, 10) << 20, bytes = strtoull(argv[5], NULL, 10) << 20;
  const int verify = strcmp(mode, "verify") == 0, random = strcmp(mode, "random") == 0;
  if (!verify && !random && strcmp(mode, "seq") != 0) {
    fprintf(stderr, "gears-diskread: mode '%s' is not seq, random or verify\n", mode);
    return 2;
  }
  int fd = open(dev, (verify ? O_RDWR : O_RDONLY) | O_DIRECT);
  uint64_t dev_bytes = 0;
  if (fd < 0 || ioctl(fd, BLKGETSIZE64, &dev_bytes) != 0) {
    fprintf(stderr, "gears-diskread: %s: %s\n", dev, strerror(errno));
    return 1;
  }
  char *buf = NULL, *back = NULL;
  if (posix_memalign((void**)&buf, 4096, kChunk) || posix_memalign((void**)&back, 4096, kChunk)) return 1;
  printf("GEARS-DISKREAD-START %s pid=%d\n", name, (int)getpid());
  fflush(stdout);
  uint64_t seed = 1469598103934665603ull;  // FNV-1a of NAME: each random reader its own walk
  for (const char* p = name; *p; ++p) seed = (seed ^ (unsigned char)*p) * 1099511628211ull;
  const uint64_t chunks = bytes / kChunk, dev_chunks = dev_bytes / kChunk;
  int ok = dev_chunks > 0 && (random || start + bytes <= dev_bytes);
  const uint64_t t0 = now_ns();
  uint64_t moved = 0;
  for (uint64_t i = 0; ok && i < chunks; ++i) {
    uint64_t off = start + i * kChunk;
    if (random) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      off = ((seed >> 17) % dev_chunks) * kChunk;
    }
    if (verify) {
      fill(buf, name, i);
      if (full_io(fd, 1, buf, off) != 0) ok = 0;
    } else if (full_io(fd, 0, buf, off) != 0) {
      ok = 0;
    }
    moved += kChunk;
  }
  if (verify && ok) {
    if (fdatasync(fd) != 0) ok = 0;
    for (uint64_t i = 0; ok && i < chunks; ++i) {
      fill(buf, name, i);
      if (full_io(fd, 0, back, start + i * kChunk) != 0 || memcmp(buf, back, kChunk) != 0) ok = 0;
    }
  }
  const uint64_t ns = now_ns() - t0;
  printf("GEARS-DISKREAD %s pid=%d mode=%s bytes=%llu ns=%llu mb_s=%.2f ok=%d\n", name, (int)getpid(), mode,
         (unsigned long long)moved, (unsigned long long)ns, ns ? (double)moved * 1e3 / (double)ns : 0.0, ok);
  return ok ? 0 : 1;
}
