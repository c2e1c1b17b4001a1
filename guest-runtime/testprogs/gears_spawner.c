// gears-spawner: an adversarial process workload with its own ground truth, for checking the
// VMM's process tracker (Antfarm-style inference from address spaces; doc/toolset.md,
// issue 13). Static, so that an exec'd image makes no dynamic loader's system calls.
//
//   gears-spawner run [ROUNDS [PAUSE_S]]
//                                every way Linux makes or changes an address space, ROUNDS
//                                times (default 1), in two workers at once (both vCPUs busy);
//                                GEARS-SPAWN-READY, PAUSE_S seconds, the cases,
//                                GEARS-SPAWN-DONE, PAUSE_S seconds
//   gears-spawner image ...      an exec'd image (internal: exits, or execs on along a chain)
//
// Every process event is printed on stdout as one line, by the process that knows it:
//   GEARS-SPAWN create PID PPID HOW      a new process (thread group); HOW names the call
//   GEARS-SPAWN exec PID FILE            a successful exec (printed by the new image)
//   GEARS-SPAWN exit PID HOW             the process ended (exit, or killed by a signal)
//   GEARS-SPAWN shared PID               the process never had an address space of its own
//                                        (clone CLONE_VM without CLONE_THREAD, a vfork child
//                                        that exits without exec): one address space, two
//                                        processes, which address-space inference cannot
//                                        tell apart
// and at the end "GEARS-SPAWN-DONE". The check counts these lines: the truth.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;
static char self[512] = "/usr/bin/gears-spawner";  // this program's path (/proc/self/exe)

// One line per event, written at once (a line never interleaves with another process's).
static void event(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void event(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
  buf[n++] = '\n';
  ssize_t w = write(1, buf, (size_t)n);
  (void)w;
}

// A child's end as its parent sees it (exit status or signal): the truth for "exit".
static void reap(pid_t pid) {
  int st = 0;
  while (waitpid(pid, &st, __WALL) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(st)) event("GEARS-SPAWN exit %d signal-%d", pid, WTERMSIG(st));
  else event("GEARS-SPAWN exit %d status-%d", pid, WEXITSTATUS(st));
}

static void exec_image(const char* how, int chain) {
  char n[16];
  snprintf(n, sizeof n, "%d", chain);
  char* argv[] = {self, "image", (char*)how, n, NULL};
  execve(self, argv, environ);
  _exit(127);  // only when the exec failed
}

// ---- the cases: each creates processes and reaps every one it created -----------------------

static void case_fork(void) {
  pid_t p = fork();
  if (p == 0) _exit(0);
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_fork_exec(void) {
  pid_t p = fork();
  if (p == 0) exec_image("fork-exec", 0);
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_vfork_exit(void) {
  pid_t p = vfork();
  if (p == 0) _exit(0);
  event("GEARS-SPAWN create %d %d vfork", p, getpid());
  event("GEARS-SPAWN shared %d", p);  // it never had an address space of its own
  reap(p);
}

static void case_vfork_exec(void) {
  pid_t p = vfork();
  if (p == 0) exec_image("vfork-exec", 0);
  event("GEARS-SPAWN create %d %d vfork", p, getpid());
  reap(p);
}

static void case_posix_spawn(void) {  // glibc: clone(CLONE_VM|CLONE_VFORK) + exec
  pid_t p;
  char* argv[] = {self, "image", "posix-spawn", "0", NULL};
  if (posix_spawn(&p, self, NULL, NULL, argv, environ) != 0) return;
  event("GEARS-SPAWN create %d %d posix_spawn", p, getpid());
  reap(p);
}

static void case_exec_fails(void) {  // execve of a missing file: the same image goes on
  pid_t p = fork();
  if (p == 0) {
    char* argv[] = {"/nonexistent/gears", NULL};
    execve(argv[0], argv, environ);
    execveat(AT_FDCWD, "/nonexistent/gears", argv, environ, 0);
    _exit(3);
  }
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_execveat(void) {  // execveat of an open fd (AT_EMPTY_PATH)
  pid_t p = fork();
  if (p == 0) {
    int fd = open(self, O_RDONLY | O_CLOEXEC);
    char* argv[] = {self, "image", "execveat", "0", NULL};
    syscall(SYS_execveat, fd, "", argv, environ, AT_EMPTY_PATH);
    _exit(127);
  }
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_exec_chain(void) {  // three execs in a row, one process
  pid_t p = fork();
  if (p == 0) exec_image("chain", 3);
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_double_fork(void) {  // a daemon: the middle process exits, init adopts
  int fds[2];
  if (pipe(fds) != 0) return;
  pid_t mid = fork();
  if (mid == 0) {
    close(fds[0]);
    pid_t d = fork();
    if (d == 0) {
      close(fds[1]);
      usleep(20000);
      event("GEARS-SPAWN exit %d status-0", getpid());  // nobody reaps it but init
      _exit(0);
    }
    event("GEARS-SPAWN create %d %d fork", d, getpid());
    ssize_t w = write(fds[1], &d, sizeof d);
    (void)w;
    _exit(0);
  }
  close(fds[1]);
  event("GEARS-SPAWN create %d %d fork", mid, getpid());
  pid_t d = 0;
  ssize_t r = read(fds[0], &d, sizeof d);
  (void)r;
  close(fds[0]);
  reap(mid);
  usleep(60000);  // the daemon ends on its own
}

static void* exec_from_thread(void* arg) {
  (void)arg;
  exec_image("thread-exec", 0);  // replaces the whole process, every thread
  return NULL;
}

static void case_thread_exec(void) {  // a second thread calls execve
  pid_t p = fork();
  if (p == 0) {
    pthread_t t;
    if (pthread_create(&t, NULL, exec_from_thread, NULL) != 0) _exit(4);
    for (;;) pause();
  }
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static void case_killed(void) {  // killed by a signal: it makes no exit system call
  pid_t p = fork();
  if (p == 0) {
    for (;;) pause();
  }
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  usleep(20000);
  kill(p, SIGKILL);
  reap(p);
}

static void* nap(void* arg) {
  (void)arg;
  usleep(5000);
  return NULL;
}

static void case_threads(void) {  // threads only: no process created
  pid_t p = fork();
  if (p == 0) {
    pthread_t t[3];
    for (int i = 0; i < 3; ++i) pthread_create(&t[i], NULL, nap, NULL);
    for (int i = 0; i < 3; ++i) pthread_join(t[i], NULL);
    _exit(0);
  }
  event("GEARS-SPAWN create %d %d fork", p, getpid());
  reap(p);
}

static char clone_stack[64 * 1024] __attribute__((aligned(16)));
static int shared_child(void* arg) {
  (void)arg;
  return 0;
}

static void case_clone_vm(void) {  // a process sharing its parent's address space
  pid_t p = clone(shared_child, clone_stack + sizeof clone_stack, CLONE_VM | SIGCHLD, NULL);
  if (p < 0) return;
  event("GEARS-SPAWN create %d %d clone-vm", p, getpid());
  event("GEARS-SPAWN shared %d", p);
  reap(p);
}

static void case_clone3(void) {  // clone3 without CLONE_VM: a fork
  struct clone_args a;
  memset(&a, 0, sizeof a);
  a.exit_signal = SIGCHLD;
  long p = syscall(SYS_clone3, &a, sizeof a);
  if (p == 0) _exit(0);
  if (p < 0) return;
  event("GEARS-SPAWN create %ld %d clone3", p, getpid());
  reap((pid_t)p);
}

static void case_short_lived(int n) {  // many children that end at once
  for (int i = 0; i < n; ++i) {
    pid_t p = fork();
    if (p == 0) _exit(0);
    event("GEARS-SPAWN create %d %d fork", p, getpid());
    reap(p);
  }
}

static void worker(int rounds) {
  for (int r = 0; r < rounds; ++r) {
    case_fork();
    case_fork_exec();
    case_vfork_exit();
    case_vfork_exec();
    case_posix_spawn();
    case_exec_fails();
    case_execveat();
    case_exec_chain();
    case_double_fork();
    case_thread_exec();
    case_killed();
    case_threads();
    case_clone_vm();
    case_clone3();
    case_short_lived(10);
  }
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  if (len > 0) self[len] = 0;
  if (argc >= 4 && strcmp(argv[1], "image") == 0) {  // an exec'd image
    int chain = atoi(argv[3]);
    event("GEARS-SPAWN exec %d %s", getpid(), self);
    if (chain > 1) exec_image(argv[2], chain - 1);
    _exit(0);
  }
  if (argc < 2 || strcmp(argv[1], "run") != 0) {
    fprintf(stderr, "usage: gears-spawner run [ROUNDS [PAUSE_S]]\n");
    return 2;
  }
  const int rounds = argc > 2 ? atoi(argv[2]) : 1;
  const unsigned pause_s = argc > 3 ? (unsigned)atoi(argv[3]) : 0;
  // The pauses (in this process: no other process comes or goes) let an observer take its
  // counts just before the first event and just after the last.
  event("GEARS-SPAWN-READY %d", getpid());
  sleep(pause_s);
  // Two workers at once, one per vCPU where the scheduler spreads them.
  pid_t w[2];
  for (int i = 0; i < 2; ++i) {
    w[i] = fork();
    if (w[i] == 0) {
      worker(rounds);
      _exit(0);
    }
    event("GEARS-SPAWN create %d %d fork", w[i], getpid());
  }
  for (int i = 0; i < 2; ++i) reap(w[i]);
  event("GEARS-SPAWN-DONE");
  sleep(pause_s);
  return 0;
}
