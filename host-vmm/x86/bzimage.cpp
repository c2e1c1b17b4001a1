#include "x86/bzimage.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace gears::vmm::x86 {

namespace {

constexpr size_t kHeaderStart = 0x1f1;
constexpr uint8_t kXlfKernel64 = 1 << 0;
constexpr uint8_t kLoadedHigh = 1 << 0;

template <class T>
T get(std::span<const uint8_t> f, size_t off) {
  T v{};
  std::memcpy(&v, f.data() + off, sizeof v);
  return v;
}

}  // namespace

Expected<std::vector<uint8_t>> read_file(const std::string& path, const std::string& what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(what + " " + path);
  struct stat st{};
  if (::fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return fail(what + " " + path + ": not a regular file");
  }
  std::vector<uint8_t> buf(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < buf.size()) {
    ssize_t n = ::read(fd, buf.data() + done, buf.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      int e = n < 0 ? errno : EIO;
      ::close(fd);
      return fail_errno(what + " " + path + ": read failed", e);
    }
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  return buf;
}

Expected<BzImage> parse_bzimage(std::span<const uint8_t> f) {
  // The header fields used below end at 0x268 (init_size); anything shorter is not a bzImage.
  if (f.size() < 0x268) return fail("kernel image too small to be a bzImage (" + std::to_string(f.size()) + " bytes)");
  if (get<uint16_t>(f, 0x1fe) != 0xAA55 || std::memcmp(f.data() + 0x202, "HdrS", 4) != 0)
    return fail("kernel image is not a bzImage (no boot sector signature / \"HdrS\" magic)");
  BzImage k;
  k.version = get<uint16_t>(f, 0x206);
  if (k.version < kMinBootProtocol) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "kernel boot protocol %u.%02u is too old (need >= 2.12)", k.version >> 8, k.version & 0xff);
    return fail(buf);
  }
  k.setup_sects = f[0x1f1] == 0 ? 4 : f[0x1f1];
  k.loadflags = f[0x211];
  k.initrd_addr_max = get<uint32_t>(f, 0x22c);
  k.kernel_alignment = get<uint32_t>(f, 0x230);
  k.xloadflags = get<uint16_t>(f, 0x236);
  k.cmdline_size = get<uint32_t>(f, 0x238);
  k.pref_address = get<uint64_t>(f, 0x258);
  k.init_size = get<uint32_t>(f, 0x260);
  if (!(k.xloadflags & kXlfKernel64)) return fail("kernel image has no 64-bit entry point (XLF_KERNEL_64 clear)");
  if (!(k.loadflags & kLoadedHigh)) return fail("kernel image is not a bzImage (LOADED_HIGH clear)");
  size_t setup_bytes = (static_cast<size_t>(k.setup_sects) + 1) * 512;
  if (setup_bytes >= f.size()) return fail("kernel image truncated: setup (" + std::to_string(setup_bytes) + " bytes) covers the whole file");
  // syssize (0x1f4) counts 16-byte paragraphs of the protected-mode part.
  uint64_t syssize = static_cast<uint64_t>(get<uint32_t>(f, 0x1f4)) * 16;
  if (syssize == 0 || syssize > f.size() - setup_bytes)
    return fail("kernel image truncated: header says " + std::to_string(syssize) + " bytes of kernel, file has " +
                std::to_string(f.size() - setup_bytes));
  if (k.init_size < syssize) return fail("kernel image header corrupt: init_size smaller than the kernel");
  if (k.cmdline_size == 0) return fail("kernel image header corrupt: cmdline_size is 0");
  // The setup header runs from 0x1f1 to 0x202 + the jump offset byte at 0x201.
  size_t hdr_end = std::min<size_t>(0x202 + f[0x201], 0x290);
  hdr_end = std::max<size_t>(hdr_end, 0x268);
  k.setup_header.assign(f.begin() + kHeaderStart, f.begin() + static_cast<std::ptrdiff_t>(hdr_end));
  k.kernel.assign(f.begin() + static_cast<std::ptrdiff_t>(setup_bytes), f.end());
  return k;
}

Expected<BzImage> load_bzimage(const std::string& path) {
  auto file = read_file(path, "kernel");
  if (!file) return fail(file.error());
  auto k = parse_bzimage(*file);
  if (!k) return fail(path + ": " + k.error().what());
  return k;
}

Expected<std::string> kernel_release(std::span<const uint8_t> f) {
  if (f.size() < 0x210 || get<uint16_t>(f, 0x1fe) != 0xAA55 || std::memcmp(f.data() + 0x202, "HdrS", 4) != 0)
    return fail("kernel image is not a bzImage (no boot sector signature / \"HdrS\" magic)");
  const uint16_t ptr = get<uint16_t>(f, 0x20e);
  if (ptr == 0) return fail("kernel image has no version string (kernel_version is 0)");
  const size_t start = static_cast<size_t>(ptr) + 0x200;
  // A release is short ("<version>-<abi>-amd64"); 64 bytes bound the scan and what we accept.
  constexpr size_t kMaxRelease = 64;
  if (start >= f.size()) return fail("kernel image version string is outside the file");
  std::string release;
  bool ended = false;
  for (size_t i = start; i < f.size() && release.size() <= kMaxRelease; ++i) {
    const char c = static_cast<char>(f[i]);
    if (c == '\0' || c == ' ') {
      ended = true;
      break;
    }
    if (c < 0x21 || c > 0x7e) return fail("kernel image version string is not printable");
    release += c;
  }
  if (release.empty()) return fail("kernel image version string is empty");
  if (release.size() > kMaxRelease) return fail("kernel image release is longer than 64 characters");
  if (!ended) return fail("kernel image version string runs past the end of the file");
  return release;
}

}  // namespace gears::vmm::x86
