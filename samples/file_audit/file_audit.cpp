// file-audit: the first gears service (doc/tutorial.md walks through it).
//
// - guest_user:   open() and openat() are interposed in chosen programs; each call is reported
//                 to the VMM half, then forwarded to the real libc function.
// - guest_kernel: a hook on do_sys_openat2 counts every open in the guest kernel and tells the
//                 VMM half the running count every 64 opens.
// - vmm:          keeps the audit log (per path) and the kernel's count, outside the guest's
//                 reach.
#include <gears/kernel.h>
#include <gears/service.h>
#include <gears/user.h>
#include <gears/vmm/service_host.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <string>

GEARS_SERVICE("file-audit", "1.0");

// One reported open. Trivially copyable, so it can cross halves (as guest pointer + size).
struct OpenEvent {
  int32_t pid;
  int32_t flags;
  int32_t result;
  char path[256];
};

// Helper without annotation: carried into every half that uses it (user and kernel here).
static bool audited_pid(int pid) { return pid > 1; }

// ---------------------------------------------------------------- VMM half
static std::mutex log_mutex;
static std::map<std::string, uint64_t> opens_by_path;
static uint64_t kernel_opens;
static gears::vmm::ServiceHost* service_host;

[[gears::vmm, gears::on_load]] int start(gears::vmm::ServiceHost& host) {
  service_host = &host;
  host.log("started");  // gears-vmm adds "file-audit: " (the service name)
  return 0;
}

// Called from the guest-user half. Guest data is untrusted: the path is bounded here.
[[gears::vmm]] int report_open(const OpenEvent& ev) {
  std::string path(ev.path, strnlen(ev.path, sizeof ev.path));
  std::lock_guard<std::mutex> lock(log_mutex);
  uint64_t seen = ++opens_by_path[path];
  if (service_host)
    service_host->log("pid " + std::to_string(ev.pid) + " opened " + path + " -> " +
                      std::to_string(ev.result) + " (" + std::to_string(seen) + " times)");
  return static_cast<int>(seen & 0x7fffffff);
}

// Called from the guest-kernel half.
[[gears::vmm]] void report_kernel_opens(uint64_t count) {
  std::lock_guard<std::mutex> lock(log_mutex);
  kernel_opens = count;
}

// ---------------------------------------------------------------- guest-user half
static void fill_event(OpenEvent& ev, const char* path, int flags, int result) {
  ev.pid = getpid();
  ev.flags = flags;
  ev.result = result;
  if (path) strncpy(ev.path, path, sizeof ev.path - 1);
}

[[gears::guest_user, gears::interpose("libc.so.6", "open", "cat", "sh")]]
int audited_open(const char* path, int flags, mode_t mode) {
  static auto next = gears::user::original<decltype(&audited_open)>("open");
  int fd = next(path, flags, mode);
  if (audited_pid(getpid())) {
    OpenEvent ev{};
    fill_event(ev, path, flags, fd);
    report_open(ev);
  }
  return fd;
}

[[gears::guest_user, gears::interpose("libc.so.6", "openat", "cat", "sh")]]
int audited_openat(int dirfd, const char* path, int flags, mode_t mode) {
  static auto next = gears::user::original<decltype(&audited_openat)>("openat");
  int fd = next(dirfd, path, flags, mode);
  if (audited_pid(getpid())) {
    OpenEvent ev{};
    fill_event(ev, path, flags, fd);
    report_open(ev);
  }
  return fd;
}

// ---------------------------------------------------------------- guest-kernel half
static unsigned long long kernel_open_count;

[[gears::guest_kernel, gears::kernel_hook("do_sys_openat2")]]
void count_open(const gears::kernel::Hook& hook) {
  if (!audited_pid(hook.pid)) return;
  unsigned long long n = gears::kernel::atomic_add(&kernel_open_count, 1);
  if (n % 64 == 0) report_kernel_opens(n);
}
