/* gears-testprog: small static guest programs for the GEARS integration tests and benchmarks
 * (tests/integration/run-toolset, tests/bench/syscall-bench). One binary, subcommands:
 *
 *   bench getpid|outb|hypercall|forkexec N   N calls; prints "GEARS-BENCH <what> <ns per call>"
 *   probe CPU SECONDS               pinned to CPU: lseek(1000+CPU, 0x5EA50000+i, 0) (EBADF) for
 *                                   SECONDS, then prints "GEARS-PROBE cpu=C calls=N"
 *   retprobe CPU SECONDS            pinned to CPU: lseek(memfd, 0x7E700000+CPU*0x100000+i, SEEK_SET)
 *                                   (returns that offset) and getppid() every 16 calls, for
 *                                   SECONDS; prints "GEARS-RETPROBE cpu=C pid=P ppid=Q calls=N bad=B"
 *                                   (B: lseek results that were not the offset)
 *   spin SECONDS                    getpid loop for SECONDS (a workload to intercept)
 *   hcfuzz N                        hypercalls with garbage numbers, pointers and lengths; checks
 *                                   each result; prints "GEARS-HCFUZZ ok=N bad=M"
 *                                   (GEARS_DEBUG=1 in the environment: every check on stderr)
 *   forkexec N PATH                 N x fork + execve(PATH, [PATH, "true"]) + wait; logs
 *                                   "GEARS-FORKEXEC-SELF pid=P" once and
 *                                   "GEARS-FORKEXEC pid=P exe=PATH" per child (ground truth)
 *   doorbell PORT [ping]            ioperm(PORT) + `outl` with EAX = ping's number, from user mode
 *                                   ([ping]: one user hypercall first); prints the RAX it got back
 *   env NAME                        prints "GEARS-ENV NAME=<value>" (or <unset>)
 *   udpsend IP PORT SIZE SECONDS    sends SIZE-byte UDP datagrams to IP:PORT as fast as it can for
 *                                   SECONDS; prints "GEARS-UDPSEND sent=N failed=F pps=R"
 *   udprecv PORT SECONDS            counts datagrams arriving on PORT from the first one for
 *                                   SECONDS (or until 2 s of silence; 120 s without any); prints
 *                                   "GEARS-UDPRECV got=N bytes=B pps=R"
 *                                   (the packet-rate benchmark: busybox has no generator)
 *   shm put DEV OFFSET TEXT         maps DEV (a shared region, e.g. /dev/gears-mpi; its size by
 *                                   lseek SEEK_END) and writes TEXT (NUL-terminated) at OFFSET;
 *                                   prints "GEARS-SHM put OFFSET size=S"
 *   shm wait DEV OFFSET TEXT SECS   polls the mapping until TEXT is at OFFSET (another VM wrote
 *                                   it) or SECS pass; prints "GEARS-SHM seen OFFSET TEXT" or
 *                                   "GEARS-SHM timeout OFFSET" (exit 1)
 *   argv [ARG...]                   prints "GEARS-ARGV argc=N |argv[0]|argv[1]|...|" (what the
 *                                   execve tool's argv rules made of the call); started under a
 *                                   name whose last component is "gears-argv" (a symlink) it does
 *                                   so whatever its arguments are
 *   true                            exits 0
 * Hypercalls are gears-vmm's service-0 calls (host-vmm/hooks/builtin_hypercalls.h). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/io.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "gears/abi/hypercall.h"

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The user hypercall: RAX = GEARS_SYSCALL_NR, RDI = number, args RSI RDX R10 R8 R9. */
static long hypercall(uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2, uint64_t a3, uint64_t a4) {
  long ret;
  register uint64_t r10 __asm__("r10") = a2;
  register uint64_t r8 __asm__("r8") = a3;
  register uint64_t r9 __asm__("r9") = a4;
  __asm__ volatile("syscall"
                   : "=a"(ret)
                   : "a"((uint64_t)GEARS_SYSCALL_NR), "D"(nr), "S"(a0), "d"(a1), "r"(r10), "r"(r8), "r"(r9)
                   : "rcx", "r11", "memory");
  return ret;
}

/* The kernel doorbell (OUT to GEARS_DOORBELL_PORT) rung from user mode after ioperm(): gears-vmm
 * must refuse it (-EPERM in RAX): only the guest kernel may use that path. */
static long doorbell_from_user(uint64_t nr) {
  uint64_t rax = nr;
  __asm__ volatile("outl %%eax, %%dx" : "+a"(rax) : "d"((uint16_t)GEARS_DOORBELL_PORT) : "memory");
  return (long)rax;
}

static int bench(const char* what, long n) {
  if (strcmp(what, "outb") == 0 && ioperm(0xe8, 1, 1) != 0) {
    perror("ioperm");
    return 1;
  }
  uint64_t t0 = now_ns();
  for (long i = 0; i < n; ++i) {
    if (strcmp(what, "getpid") == 0) syscall(SYS_getpid);
    else if (strcmp(what, "outb") == 0) outb(0, 0xe8);
    else if (strcmp(what, "hypercall") == 0) hypercall(GEARS_HC_MAKE(0, 1), (uint64_t)i, 0, 0, 0, 0);
    else if (strcmp(what, "forkexec") == 0) {
      pid_t pid = fork();
      if (pid == 0) {
        char* args[] = {(char*)"/usr/bin/gears-testprog", (char*)"true", NULL};
        execv(args[0], args);
        _exit(127);
      }
      if (pid > 0) waitpid(pid, NULL, 0);
    }
    else {
      fprintf(stderr, "bench: unknown '%s'\n", what);
      return 2;
    }
  }
  uint64_t t1 = now_ns();
  printf("GEARS-BENCH %s %.1f\n", what, (double)(t1 - t0) / (double)n);
  return 0;
}

static int pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set);
}

static int probe(int cpu, int seconds) {
  if (pin(cpu) != 0) {
    perror("sched_setaffinity");
    return 1;
  }
  uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
  long calls = 0;
  while (now_ns() < end) {
    syscall(SYS_lseek, 1000 + cpu, 0x5EA50000L + calls, 0);
    ++calls;
  }
  printf("GEARS-PROBE cpu=%d calls=%ld lastcpu=%d\n", cpu, calls, sched_getcpu());
  return 0;
}

static int retprobe(int cpu, int seconds) {
  if (pin(cpu) != 0) {
    perror("sched_setaffinity");
    return 1;
  }
  int fd = (int)syscall(SYS_memfd_create, "gears-retprobe", 0);
  if (fd < 0) {
    perror("memfd_create");
    return 1;
  }
  const long base = 0x7E700000L + (long)cpu * 0x100000L;
  uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
  long calls = 0, bad_ret = 0, ppid = 0;
  while (now_ns() < end && calls < 0xFFFFF) {
    long r = syscall(SYS_lseek, fd, base + calls, SEEK_SET);
    if (r != base + calls) ++bad_ret;
    if (calls % 16 == 0) ppid = syscall(SYS_getppid);
    ++calls;
  }
  printf("GEARS-RETPROBE cpu=%d pid=%d ppid=%ld calls=%ld bad=%ld lastcpu=%d\n", cpu, (int)getpid(), ppid, calls,
         bad_ret, sched_getcpu());
  close(fd);
  return 0;
}

static int spin(int seconds) {
  uint64_t end = now_ns() + (uint64_t)seconds * 1000000000ull;
  long calls = 0;
  while (now_ns() < end) {
    for (int i = 0; i < 100; ++i) syscall(SYS_getpid);
    calls += 100;
  }
  printf("GEARS-SPIN calls=%ld\n", calls);
  return 0;
}

static int ok, bad;
static void expect(const char* what, long got, long want) {
  if (getenv("GEARS_DEBUG")) fprintf(stderr, "hcfuzz: %s -> %ld\n", what, got);
  if (got == want) {
    ++ok;
  } else {
    ++bad;
    printf("GEARS-HCFUZZ-FAIL %s: got %ld want %ld\n", what, got, want);
  }
}

static int hcfuzz(long n) {
  /* A readable buffer followed by an unmapped page. */
  char* two = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (two == MAP_FAILED) return 1;
  munmap(two + 4096, 4096);
  memset(two, 1, 4096);
  static const char hello[] = "hello, gears";
  expect("ping", hypercall(GEARS_HC_MAKE(0, 1), 41, 0, 0, 0, 0), 42);
  expect("sum ok", hypercall(GEARS_HC_MAKE(0, 2), (uint64_t)two, 4096, 0, 0, 0), 4096);
  expect("sum empty", hypercall(GEARS_HC_MAKE(0, 2), 0, 0, 0, 0, 0), 0);
  expect("sum NULL", hypercall(GEARS_HC_MAKE(0, 2), 0, 16, 0, 0, 0), -EFAULT);
  expect("sum across unmapped", hypercall(GEARS_HC_MAKE(0, 2), (uint64_t)two + 4000, 200, 0, 0, 0), -EFAULT);
  expect("sum kernel text", hypercall(GEARS_HC_MAKE(0, 2), 0xffffffff81000000ull, 64, 0, 0, 0), -EFAULT);
  expect("sum direct map", hypercall(GEARS_HC_MAKE(0, 2), 0xffff888000000000ull, 64, 0, 0, 0), -EFAULT);
  expect("sum non-canonical", hypercall(GEARS_HC_MAKE(0, 2), 0x8000000000000000ull, 64, 0, 0, 0), -EFAULT);
  expect("sum wraps", hypercall(GEARS_HC_MAKE(0, 2), ~0ull - 8, 64, 0, 0, 0), -EFAULT);
  expect("sum huge", hypercall(GEARS_HC_MAKE(0, 2), (uint64_t)two, 1ull << 40, 0, 0, 0), -E2BIG);
  expect("sum ~0", hypercall(GEARS_HC_MAKE(0, 2), (uint64_t)two, ~0ull, 0, 0, 0), -E2BIG);
  expect("strlen", hypercall(GEARS_HC_MAKE(0, 3), (uint64_t)hello, 0, 0, 0, 0), (long)strlen(hello));
  expect("strlen unterminated", hypercall(GEARS_HC_MAKE(0, 3), (uint64_t)two, 0, 0, 0, 0), -EFAULT);
  expect("strlen bad", hypercall(GEARS_HC_MAKE(0, 3), 0xdead000, 0, 0, 0, 0), -EFAULT);
  expect("unknown service", hypercall(GEARS_HC_MAKE(0x7777, 1), 1, 2, 3, 4, 5), -ENOSYS);
  expect("upper bits", hypercall(0x100000001ull, 0, 0, 0, 0, 0), -ENOSYS);
  expect("all ones", hypercall(~0ull, ~0ull, ~0ull, ~0ull, ~0ull, ~0ull), -ENOSYS);
  /* Random garbage: any negative errno or a value is fine; the point is that we get here. */
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (long i = 0; i < n; ++i) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    uint64_t nr = (i % 3 == 0) ? GEARS_HC_MAKE(0, 2 + x % 4) : x; /* not ping: its value is arbitrary */
    long r = hypercall(nr, x * 3, x >> (i % 64), x ^ 0xffffffff81000000ull, x, ~x);
    if (r < -4095) {
      ++bad;
      printf("GEARS-HCFUZZ-FAIL garbage %d: got %ld\n", (int)i, r);
    } else {
      ++ok;
    }
  }
  if (ioperm(GEARS_DOORBELL_PORT, 4, 1) == 0) expect("doorbell from user", doorbell_from_user(GEARS_HC_MAKE(0, 1)), -EPERM);
  else printf("GEARS-HCFUZZ-NOTE ioperm failed: doorbell not tried\n");
  /* Still a working process: a plain syscall answers. */
  expect("getppid after", syscall(SYS_getppid) > 0, 1);
  printf("GEARS-HCFUZZ ok=%d bad=%d\n", ok, bad);
  return bad == 0 ? 0 : 1;
}

static int forkexec(long n, const char* path) {
  printf("GEARS-FORKEXEC-SELF pid=%d\n", (int)getpid());
  for (long i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    if (pid == 0) {
      char* argv[] = {(char*)path, (char*)"true", NULL};
      execv(path, argv);
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    printf("GEARS-FORKEXEC pid=%d exe=%s status=%d\n", (int)pid, path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int udpsend(const char* ip, int port, int size, int seconds) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  char buf[65536];
  if (fd < 0 || inet_pton(AF_INET, ip, &to.sin_addr) != 1 || size < 1 || size > (int)sizeof buf) {
    fprintf(stderr, "udpsend: bad socket/address/size\n");
    return 1;
  }
  memset(buf, 0x47, (size_t)size);
  long sent = 0, failed = 0;
  const double start = now_s(), end = start + seconds;
  double t = start;
  while (t < end) {
    for (int i = 0; i < 256; ++i) {
      if (sendto(fd, buf, (size_t)size, 0, (struct sockaddr*)&to, sizeof to) == size) ++sent;
      else ++failed;
    }
    t = now_s();
  }
  printf("GEARS-UDPSEND sent=%ld failed=%ld pps=%.0f\n", sent, failed, (double)sent / (t - start));
  return 0;
}

static int udprecv(int port, int seconds) {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  struct sockaddr_in at = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  int rcv = 4 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
  if (fd < 0 || bind(fd, (struct sockaddr*)&at, sizeof at) != 0) {
    perror("udprecv: bind");
    return 1;
  }
  struct timeval tv = {.tv_sec = 2};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  printf("GEARS-UDPRECV ready port=%d\n", port);
  char buf[65536];
  long got = 0, bytes = 0;
  double first = 0, last = 0;
  const double give_up = now_s() + 120;  // no sender at all
  for (;;) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      if (got || now_s() > give_up) break;  // 2 s of silence after traffic: the sender is done
      if (errno == EAGAIN || errno == EWOULDBLOCK) continue;
      perror("udprecv: recv");
      return 1;
    }
    last = now_s();
    if (!got) first = last;
    ++got;
    bytes += n;
    if (last - first >= seconds) break;
  }
  const double span = last - first;
  printf("GEARS-UDPRECV got=%ld bytes=%ld pps=%.0f\n", got, bytes, span > 0 ? (double)(got - 1) / span : 0.0);
  return 0;
}

/* A shared region device mapped whole; its size from lseek(SEEK_END) (the gears runtime's
 * char device) or fstat (a plain file). */
static volatile char* shm_map(const char* dev, long offset, size_t need, size_t* size_out) {
  int fd = open(dev, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "GEARS-SHM open %s: %s\n", dev, strerror(errno));
    return NULL;
  }
  off_t size = lseek(fd, 0, SEEK_END);
  if (size <= 0 || offset < 0 || (size_t)offset + need > (size_t)size) {
    fprintf(stderr, "GEARS-SHM %s: size %ld cannot hold %zu bytes at %ld\n", dev, (long)size, need, offset);
    close(fd);
    return NULL;
  }
  void* p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    fprintf(stderr, "GEARS-SHM mmap %s: %s\n", dev, strerror(errno));
    return NULL;
  }
  *size_out = (size_t)size;
  return (volatile char*)p;
}

static int shm(int argc, char** argv) {
  const char* verb = argv[2];
  const char* dev = argv[3];
  long offset = atol(argv[4]);
  const char* text = argv[5];
  size_t len = strlen(text) + 1, size = 0;
  volatile char* m = shm_map(dev, offset, len, &size);
  if (!m) return 1;
  if (strcmp(verb, "put") == 0) {
    for (size_t i = 0; i < len; ++i) m[offset + (long)i] = text[i];
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    printf("GEARS-SHM put %ld size=%zu\n", offset, size);
    return 0;
  }
  if (strcmp(verb, "wait") == 0 && argc >= 7) {
    const double until = now_s() + atof(argv[6]);
    while (now_s() < until) {
      size_t i = 0;
      while (i < len && m[offset + (long)i] == text[i]) ++i;
      if (i == len) {
        printf("GEARS-SHM seen %ld %s\n", offset, text);
        return 0;
      }
      usleep(10000);
    }
    printf("GEARS-SHM timeout %ld\n", offset);
    return 1;
  }
  fprintf(stderr, "usage: gears-testprog shm put DEV OFFSET TEXT | shm wait DEV OFFSET TEXT SECONDS\n");
  return 2;
}

static int print_argv(int argc, char** argv) {
  printf("GEARS-ARGV argc=%d |", argc);
  for (int i = 0; i < argc; ++i) printf("%s|", argv[i]);
  printf("\n");
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc >= 1) {
    const char* base = strrchr(argv[0], '/');
    if (strcmp(base ? base + 1 : argv[0], "gears-argv") == 0) return print_argv(argc, argv);
  }
  if (argc >= 2 && strcmp(argv[1], "argv") == 0) return print_argv(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "true") == 0) return 0;
  if (argc >= 4 && strcmp(argv[1], "bench") == 0) return bench(argv[2], atol(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "probe") == 0) return probe(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 4 && strcmp(argv[1], "retprobe") == 0) return retprobe(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 3 && strcmp(argv[1], "spin") == 0) return spin(atoi(argv[2]));
  if (argc >= 3 && strcmp(argv[1], "hcfuzz") == 0) return hcfuzz(atol(argv[2]));
  if (argc >= 4 && strcmp(argv[1], "forkexec") == 0) return forkexec(atol(argv[2]), argv[3]);
  if (argc >= 3 && strcmp(argv[1], "doorbell") == 0) {
    unsigned port = (unsigned)strtoul(argv[2], NULL, 0);
    if (ioperm(port, 4, 1) != 0) {
      perror("ioperm");
      return 1;
    }
    if (argc >= 4) printf("GEARS-DOORBELL ping first: %ld\n", hypercall(GEARS_HC_MAKE(0, 1), 1, 0, 0, 0, 0));
    uint64_t rax = GEARS_HC_MAKE(0, 1);
    __asm__ volatile("outl %%eax, %%dx" : "+a"(rax) : "d"((uint16_t)port) : "memory");
    printf("GEARS-DOORBELL port=%#x rax=%ld\n", port, (long)rax);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "env") == 0) {
    const char* v = getenv(argv[2]);
    printf("GEARS-ENV %s=%s\n", argv[2], v ? v : "<unset>");
    return 0;
  }
  if (argc >= 6 && strcmp(argv[1], "udpsend") == 0) return udpsend(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
  if (argc >= 4 && strcmp(argv[1], "udprecv") == 0) return udprecv(atoi(argv[2]), atoi(argv[3]));
  if (argc >= 6 && strcmp(argv[1], "shm") == 0) return shm(argc, argv);
  fprintf(stderr, "usage: gears-testprog bench|probe|retprobe|spin|hcfuzz|forkexec|doorbell|env|argv|udpsend|udprecv|shm|true ...\n");
  return 2;
}
