/* gears-workload: a dynamically linked guest workload for the "deploy into a running guest"
 * tests (/usr/bin/gears-workload in the guest image). Its open() calls go through the PLT to
 * glibc, so a user half loaded with LD_PRELOAD (or injected later) can interpose them, and a
 * kernel half's kprobe on do_sys_openat2 sees them.
 *
 *   loop MS [TAG [FILE]]    forever: open FILE, read, close, print
 *                           "workload TAG: iter N pid P fd F", sleep MS ms (nanosleep)
 *   blockread [TAG [FILE]]  prints "workload TAG: ready pid P", then blocks in read(0, ...);
 *                           for each line read, one open() (and close) of FILE and
 *                           "workload TAG: line N opened fd F"
 *   sigexit [TAG]           prints "workload TAG: ready pid P", then blocks in read(0, ...)
 *                           (give it a pipe that never delivers); a SIGCONT ends it at once
 *                           with _exit(3). gears nudges a target blocked in a syscall with
 *                           SIGSTOP + SIGCONT, so this one dies in the middle of an injection
 *                           (the deploy test's "target exits mid-injection" case).
 *
 * TAG defaults to "w", FILE to /etc/hostname (in the guest image). SIGTERM (and SIGINT) end
 * either mode with "workload TAG: done", exit status 0; so does end of input in blockread.
 * Output is line buffered, so a test reading it through a pipe or file sees every line at
 * once. F is -errno when open fails. */
#undef _FORTIFY_SOURCE /* keep open() a plain PLT call to open, not __open_2 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig) {
  (void)sig;
  stop_requested = 1;
}

/* Without SA_RESTART: the signal interrupts nanosleep/read (EINTR), so the loop sees it. */
static int install_stop_handler(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) {
    perror("gears-workload: sigaction");
    return -1;
  }
  return 0;
}

/* Opens, reads and closes FILE; returns the fd it had (or -errno). */
static int touch_file(const char *file) {
  int fd = open(file, O_RDONLY);
  if (fd < 0) return -errno;
  char buf[256];
  while (read(fd, buf, sizeof(buf)) > 0) {
  }
  close(fd);
  return fd;
}

static int run_loop(long ms, const char *tag, const char *file) {
  struct timespec period = {ms / 1000, (ms % 1000) * 1000000L};
  for (unsigned long iter = 1; !stop_requested; iter++) {
    int fd = touch_file(file);
    printf("workload %s: iter %lu pid %d fd %d\n", tag, iter, (int)getpid(), fd);
    struct timespec left = period;
    /* Sleep the whole period unless a stop request interrupts it. */
    while (!stop_requested && nanosleep(&left, &left) != 0 && errno == EINTR) {
    }
  }
  printf("workload %s: done\n", tag);
  return 0;
}

static int run_blockread(const char *tag, const char *file) {
  printf("workload %s: ready pid %d\n", tag, (int)getpid());
  unsigned long lines = 0;
  char buf[512];
  while (!stop_requested) {
    ssize_t n = read(0, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      perror("gears-workload: read");
      return 1;
    }
    if (n == 0) break; /* writer closed the pipe */
    for (ssize_t i = 0; i < n; i++) {
      if (buf[i] != '\n') continue;
      int fd = open(file, O_RDONLY);
      if (fd >= 0)
        close(fd);
      else
        fd = -errno;
      printf("workload %s: line %lu opened fd %d\n", tag, ++lines, fd);
    }
  }
  printf("workload %s: done\n", tag);
  return 0;
}

static void exit_on_sigcont(int sig) {
  (void)sig;
  _exit(3);
}

static int run_sigexit(const char *tag) {
  struct sigaction sa;
  memset(&sa, 0, sizeof(sa));
  sa.sa_handler = exit_on_sigcont;
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGCONT, &sa, NULL) != 0) {
    perror("gears-workload: sigaction");
    return 1;
  }
  printf("workload %s: ready pid %d\n", tag, (int)getpid());
  char buf[64];
  while (!stop_requested) {
    ssize_t n = read(0, buf, sizeof(buf));
    if (n == 0) break;
    if (n < 0 && errno != EINTR) {
      perror("gears-workload: read");
      return 1;
    }
  }
  printf("workload %s: done\n", tag);
  return 0;
}

static int usage(void) {
  fprintf(stderr, "usage: gears-workload loop MS [TAG [FILE]] | blockread [TAG [FILE]] | sigexit [TAG]\n");
  return 2;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) return usage();
  if (install_stop_handler() != 0) return 1;
  const char *default_file = "/etc/hostname";
  if (strcmp(argv[1], "loop") == 0) {
    if (argc < 3 || argc > 5) return usage();
    char *end = NULL;
    long ms = strtol(argv[2], &end, 10);
    if (*argv[2] == '\0' || *end != '\0' || ms < 0 || ms > 3600000) return usage();
    return run_loop(ms, argc > 3 ? argv[3] : "w", argc > 4 ? argv[4] : default_file);
  }
  if (strcmp(argv[1], "blockread") == 0) {
    if (argc > 4) return usage();
    return run_blockread(argc > 2 ? argv[2] : "w", argc > 3 ? argv[3] : default_file);
  }
  if (strcmp(argv[1], "sigexit") == 0) {
    if (argc > 3) return usage();
    return run_sigexit(argc > 2 ? argv[2] : "w");
  }
  return usage();
}
