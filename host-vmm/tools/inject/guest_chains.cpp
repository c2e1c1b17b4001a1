#include "tools/inject/guest_chains.h"

#include <cstring>

#include "tools/inject/elf_symbols.h"

namespace gears::vmm::inject {

namespace {

constexpr uint64_t kOWronly = 01, kOCreat = 0100, kOTrunc = 01000, kODirectory = 0200000, kOCloexec = 02000000,
                   kONonblock = 04000, kONofollow = 0400000, kRtldNow = 2;
constexpr uint64_t kPathMax = 4096, kDentsBuf = 32 * 1024, kMapsMax = 256 * 1024, kMaxProcesses = 4096;
constexpr int64_t kEexist = -17, kEintr = -4;

std::string basename_of(const std::string& p) {
  auto slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

bool is_error(int64_t r) { return r < 0 && r > -4096; }

// One /proc/PID/maps line: "start-end perms offset dev inode   path".
struct MapsLine {
  uint64_t start = 0, offset = 0;
  std::string path;
};
bool parse_maps_line(const std::string& line, MapsLine& out) {
  unsigned long long start = 0, end = 0, off = 0;
  char perms[8] = {};
  int consumed = 0;
  if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %*s %*s %n", &start, &end, perms, &off, &consumed) < 4) return false;
  out.start = start;
  out.offset = off;
  out.path = consumed > 0 && static_cast<size_t>(consumed) <= line.size() ? line.substr(static_cast<size_t>(consumed)) : "";
  while (!out.path.empty() && out.path.front() == ' ') out.path.erase(0, 1);
  return true;
}

}  // namespace

std::string errno_text(int64_t negative_errno) {
  const int e = static_cast<int>(-negative_errno);
  const char* name = strerrorname_np(e);
  return std::string(name ? name : ("errno " + std::to_string(e)).c_str()) + " (" + std::strerror(e) + ")";
}

bool is_safe_for_user_calls(uint64_t nr) {
  switch (nr) {
    case 0:    // read
    case 7:    // poll
    case 23:   // select
    case 34:   // pause
    case 35:   // nanosleep
    case 43:   // accept
    case 45:   // recvfrom
    case 47:   // recvmsg
    case 61:   // wait4
    case 230:  // clock_nanosleep
    case 232:  // epoll_wait
    case 270:  // pselect6
    case 271:  // ppoll
    case 281:  // epoll_pwait
    case 219:  // restart_syscall (a nanosleep/poll resumed after a stop)
    case 288:  // accept4
    case 441:  // epoll_pwait2
      return true;
    default:
      return false;
  }
}

Chain getpid_chain(ChainContext& cx) {
  int64_t pid = co_await cx.syscall(sys::getpid);
  co_return pid;
}

Chain load_module_chain(ChainContext& cx, std::shared_ptr<const std::vector<uint8_t>> image, std::string params) {
  const uint64_t len = image->size();
  int64_t area = co_await cx.scratch(len + params.size() + 1);
  if (is_error(area)) co_return fail("mmap of " + std::to_string(len) + " bytes in the borrowed process: " + errno_text(area));
  const auto a = static_cast<uint64_t>(area);
  GEARS_CO_TRY_VOID(cx.write(a, *image));
  GEARS_CO_TRY_VOID(cx.write_string(a + len, params));
  int64_t r = co_await cx.syscall(sys::init_module, a, len, a + len);
  if (r < 0) co_return fail("the guest kernel refused the module: init_module: " + errno_text(r));
  co_return 0;
}

Chain unload_module_chain(ChainContext& cx, std::string name) {
  int64_t area = co_await cx.scratch(name.size() + 1);
  if (is_error(area)) co_return fail("mmap in the borrowed process: " + errno_text(area));
  GEARS_CO_TRY_VOID(cx.write_string(static_cast<uint64_t>(area), name));
  int64_t r = co_await cx.syscall(sys::delete_module, area, kONonblock);
  if (r < 0) co_return fail("delete_module(" + name + "): " + errno_text(r));
  co_return 0;
}

Chain write_file_chain(ChainContext& cx, std::string path, std::shared_ptr<const std::vector<uint8_t>> data,
                       uint32_t mode) {
  if (path.empty() || path.front() != '/' || path.size() >= kPathMax) co_return fail("bad guest path '" + path + "'");
  const uint64_t len = data->size();
  int64_t area = co_await cx.scratch(kPathMax + len);
  if (is_error(area)) co_return fail("mmap in the borrowed process: " + errno_text(area));
  const auto a = static_cast<uint64_t>(area);
  const std::string dir = path.substr(0, path.rfind('/'));
  if (!dir.empty()) {
    GEARS_CO_TRY_VOID(cx.write_string(a, dir));
    int64_t m = co_await cx.syscall(sys::mkdirat, sys::at_fdcwd, a, 0755);
    if (m < 0 && m != kEexist) co_return fail("mkdir " + dir + ": " + errno_text(m));
  }
  GEARS_CO_TRY_VOID(cx.write_string(a, path));
  GEARS_CO_TRY_VOID(cx.write(a + kPathMax, *data));
  // O_NOFOLLOW: a symlink planted at the path by a guest user is not followed as root.
  int64_t fd = co_await cx.syscall(sys::openat, sys::at_fdcwd, a, kOWronly | kOCreat | kOTrunc | kOCloexec | kONofollow,
                                   mode);
  if (fd < 0) co_return fail("open " + path + ": " + errno_text(fd));
  uint64_t done = 0;
  int64_t err = 0;
  while (done < len) {
    int64_t w = co_await cx.syscall(sys::write, fd, a + kPathMax + done, len - done);
    if (w == kEintr) continue;
    if (w <= 0) {
      err = w == 0 ? -28 /* ENOSPC */ : w;
      break;
    }
    done += static_cast<uint64_t>(w);
  }
  (void)co_await cx.syscall(sys::close, fd);
  if (err) co_return fail("write " + path + ": " + errno_text(err));
  co_return static_cast<int64_t>(len);
}

Chain remove_file_chain(ChainContext& cx, std::string path) {
  int64_t area = co_await cx.scratch(path.size() + 1);
  if (is_error(area)) co_return fail("mmap in the borrowed process: " + errno_text(area));
  GEARS_CO_TRY_VOID(cx.write_string(static_cast<uint64_t>(area), path));
  int64_t r = co_await cx.syscall(sys::unlinkat, sys::at_fdcwd, area, 0);
  if (r < 0) co_return fail("unlink " + path + ": " + errno_text(r));
  co_return 0;
}

Chain list_processes_chain(ChainContext& cx, std::shared_ptr<std::vector<GuestProcess>> out) {
  // Layout: [0, 4 KiB) path, [4 KiB, 8 KiB) readlink buffer, then one big read buffer.
  int64_t area = co_await cx.scratch(2 * kPathMax + kMapsMax);
  if (is_error(area)) co_return fail("mmap in the borrowed process: " + errno_text(area));
  const auto a = static_cast<uint64_t>(area), link = a + kPathMax, buf = a + 2 * kPathMax;
  GEARS_CO_TRY_VOID(cx.write_string(a, "/proc"));
  int64_t dfd = co_await cx.syscall(sys::openat, sys::at_fdcwd, a, kODirectory | kOCloexec);
  if (dfd < 0) co_return fail("open /proc: " + errno_text(dfd));
  std::vector<int64_t> pids;
  std::vector<uint8_t> dents(kDentsBuf);
  for (;;) {
    int64_t n = co_await cx.syscall(sys::getdents64, dfd, buf, kDentsBuf);
    if (n <= 0) break;
    const auto got = static_cast<size_t>(std::min<int64_t>(n, static_cast<int64_t>(kDentsBuf)));
    if (!cx.read(buf, std::span<uint8_t>(dents.data(), got))) break;
    // struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
    for (size_t off = 0; off + 19 < got && pids.size() < kMaxProcesses;) {
      uint16_t reclen = 0;
      std::memcpy(&reclen, &dents[off + 16], 2);
      if (reclen < 20 || off + reclen > got) break;
      const char* name = reinterpret_cast<const char*>(&dents[off + 19]);
      const size_t max = reclen - 19;
      const std::string s(name, strnlen(name, max));
      if (!s.empty() && s.find_first_not_of("0123456789") == std::string::npos && s.size() < 10)
        pids.push_back(std::stoll(s));
      off += reclen;
    }
  }
  (void)co_await cx.syscall(sys::close, dfd);

  for (int64_t pid : pids) {
    GuestProcess p;
    p.pid = pid;
    const std::string dir = "/proc/" + std::to_string(pid);
    GEARS_CO_TRY_VOID(cx.write_string(a, dir + "/exe"));
    int64_t n = co_await cx.syscall(sys::readlinkat, sys::at_fdcwd, a, link, kPathMax - 1);
    if (n <= 0) continue;  // a kernel thread (no exe) or gone
    std::vector<uint8_t> exe(static_cast<size_t>(n));
    if (!cx.read(link, exe)) continue;
    p.exe.assign(exe.begin(), exe.end());
    GEARS_CO_TRY_VOID(cx.write_string(a, dir + "/maps"));
    int64_t fd = co_await cx.syscall(sys::openat, sys::at_fdcwd, a, kOCloexec);
    if (fd >= 0) {
      uint64_t have = 0;
      for (;;) {
        int64_t r = co_await cx.syscall(sys::read, fd, buf + have, kMapsMax - have);
        if (r <= 0) break;
        have += static_cast<uint64_t>(r);
        if (have >= kMapsMax) break;
      }
      (void)co_await cx.syscall(sys::close, fd);
      std::string maps(have, '\0');
      if (have && cx.read(buf, std::span<uint8_t>(reinterpret_cast<uint8_t*>(maps.data()), have))) {
        std::set<std::string> libs;
        size_t pos = 0;
        while (pos < maps.size()) {
          size_t nl = maps.find('\n', pos);
          if (nl == std::string::npos) nl = maps.size();
          MapsLine ml;
          if (parse_maps_line(maps.substr(pos, nl - pos), ml) && !ml.path.empty() && ml.path.front() == '/') {
            const std::string base = basename_of(ml.path);
            libs.insert(base);
            if (base == "libc.so.6" && ml.offset == 0 && !p.libc_base) p.libc_base = ml.start;
          }
          pos = nl + 1;
        }
        p.libs.assign(libs.begin(), libs.end());
      }
    }
    out->push_back(std::move(p));
  }
  co_return static_cast<int64_t>(out->size());
}

Chain kick_chain(ChainContext& cx, int64_t pid) {
  int64_t self = co_await cx.syscall(sys::getpid);
  if (self == pid) co_return fail("borrowed the target itself");
  int64_t r = co_await cx.syscall(sys::kill, pid, 19 /* SIGSTOP */);
  int64_t c = co_await cx.syscall(sys::kill, pid, 18 /* SIGCONT */);
  if (r < 0) co_return fail("kill(" + std::to_string(pid) + ", SIGSTOP): " + errno_text(r));
  if (c < 0) co_return fail("kill(" + std::to_string(pid) + ", SIGCONT): " + errno_text(c));
  co_return 0;
}

Chain dlopen_chain(ChainContext& cx, ClaimFn claim, std::string path, std::string attach,
                   std::shared_ptr<DlopenOutcome> out) {
  const int64_t pid = co_await cx.syscall(sys::getpid);
  out->pid = pid;
  const std::optional<uint64_t> libc = claim(pid);
  if (!libc) co_return 0;
  out->wanted = true;
  const uint64_t libc_base = *libc;
  auto dlopen = resolve_symbol(cx.space(), libc_base, "dlopen");
  auto dlerror = resolve_symbol(cx.space(), libc_base, "dlerror");
  auto dlsym = resolve_symbol(cx.space(), libc_base, "dlsym");
  if (!dlopen || !dlerror || !dlsym)
    co_return fail("libc's dlopen/dlerror/dlsym not found: " +
                   (!dlopen ? dlopen.error().what() : !dlerror ? dlerror.error().what() : dlsym.error().what()));
  int64_t area = co_await cx.scratch(2 * kPathMax);
  if (is_error(area)) co_return fail("mmap in the target: " + errno_text(area));
  const auto a = static_cast<uint64_t>(area);
  GEARS_CO_TRY_VOID(cx.write_string(a, path));
  const int64_t h = co_await cx.call(*dlopen, a, kRtldNow);
  if (h == 0) {
    const int64_t msg = co_await cx.call(*dlerror);
    auto text = msg ? cx.read_string(static_cast<uint64_t>(msg), 1024) : Expected<std::string>(std::string("?"));
    co_return fail("dlopen " + path + ": " + (text ? *text : std::string("(unreadable dlerror)")));
  }
  out->handle = static_cast<uint64_t>(h);
  if (!attach.empty()) {
    GEARS_CO_TRY_VOID(cx.write_string(a + kPathMax, attach));
    const int64_t fn = co_await cx.call(*dlsym, h, a + kPathMax);
    if (fn != 0) {
      const auto r = static_cast<int32_t>(co_await cx.call(static_cast<uint64_t>(fn)));
      if (r != 0) co_return fail(attach + " returned " + std::to_string(r) + (r < 0 ? " (" + errno_text(r) + ")" : ""));
    }
  }
  co_return h;
}

Chain dlclose_chain(ChainContext& cx, uint64_t libc_base, uint64_t handle, std::string detach) {
  auto dlsym = resolve_symbol(cx.space(), libc_base, "dlsym");
  auto dlclose = resolve_symbol(cx.space(), libc_base, "dlclose");
  if (!dlsym || !dlclose) co_return fail("libc's dlsym/dlclose not found");
  int64_t area = co_await cx.scratch(kPathMax);
  if (is_error(area)) co_return fail("mmap in the target: " + errno_text(area));
  int32_t detached = 0;
  if (!detach.empty()) {
    GEARS_CO_TRY_VOID(cx.write_string(static_cast<uint64_t>(area), detach));
    const int64_t fn = co_await cx.call(*dlsym, handle, area);
    if (fn != 0) detached = static_cast<int32_t>(co_await cx.call(static_cast<uint64_t>(fn)));
  }
  const int64_t r = co_await cx.call(*dlclose, handle);
  if (detached != 0) co_return fail(detach + " returned " + std::to_string(detached));
  if (static_cast<int32_t>(r) != 0) co_return fail("dlclose returned " + std::to_string(static_cast<int32_t>(r)));
  co_return 0;
}

}  // namespace gears::vmm::inject
