#include "shm/shared_region.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace gears::vmm::shm {

Expected<std::unique_ptr<SharedRegion>> SharedRegion::attach(const RegionSpec& spec) {
  std::unique_ptr<SharedRegion> r(new SharedRegion());
  r->spec_ = spec;
  const std::string what = "--shm " + spec.name + " (" + spec.path + ")";
  r->fd_ = ::open(spec.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (r->fd_ < 0) return fail_errno(what);
  struct stat st{};
  if (::fstat(r->fd_, &st) < 0) return fail_errno(what);
  if (!S_ISREG(st.st_mode)) return fail(what + ": not a regular file");

  const uint64_t file_size = SharedRegion::kVmmAreaSize + spec.size;
  if (::flock(r->fd_, LOCK_EX | LOCK_NB) == 0) {
    // Nobody else is attached: start from zeroed memory of the requested size.
    r->first_ = true;
    if (::ftruncate(r->fd_, 0) < 0 || ::ftruncate(r->fd_, static_cast<off_t>(file_size)) < 0)
      return fail_errno(what + ": ftruncate");
    // Down to a shared lock: peers may now attach. (Linux converts by dropping and retaking;
    // a peer that slips in between zeroes the region again, harmless before any guest runs.)
    if (::flock(r->fd_, LOCK_SH) < 0) return fail_errno(what + ": flock");
  } else if (errno == EWOULDBLOCK) {
    if (::flock(r->fd_, LOCK_SH) < 0) return fail_errno(what + ": flock");
    if (::fstat(r->fd_, &st) < 0) return fail_errno(what);
    if (static_cast<uint64_t>(st.st_size) != file_size) {
      const uint64_t theirs = static_cast<uint64_t>(st.st_size) > kVmmAreaSize ? st.st_size - kVmmAreaSize : 0;
      return fail(what + ": attached by another VM with size " + std::to_string(theirs >> 20) + "M, this one asks for " +
                  std::to_string(spec.size >> 20) + "M");
    }
  } else {
    return fail_errno(what + ": flock");
  }
  void* p = ::mmap(nullptr, file_size, PROT_READ | PROT_WRITE, MAP_SHARED, r->fd_, 0);
  if (p == MAP_FAILED) return fail_errno(what + ": mmap");
  r->host_ = static_cast<uint8_t*>(p) + kVmmAreaSize;
  r->attached_ = true;
  return r;
}

SharedRegion::~SharedRegion() {
  if (host_) ::munmap(host_ - kVmmAreaSize, kVmmAreaSize + spec_.size);
  if (fd_ < 0) return;
  // The last VM out removes the file: nobody else holds a lock once ours is upgraded. Only
  // after a complete attach: a refused path (not a regular file, say) is never unlinked.
  if (attached_ && ::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
    struct stat by_fd{}, by_path{};
    // Only if the path still names our file (not one a new job created after an unlink).
    if (::fstat(fd_, &by_fd) == 0 && ::lstat(spec_.path.c_str(), &by_path) == 0 && by_fd.st_ino == by_path.st_ino &&
        by_fd.st_dev == by_path.st_dev)
      ::unlink(spec_.path.c_str());
  }
  ::close(fd_);
}

Expected<std::span<uint8_t>> SharedRegion::span(uint64_t offset, uint64_t len) const {
  if (offset > spec_.size || len > spec_.size - offset)
    return fail("shared region " + spec_.name + ": range [" + std::to_string(offset) + ", +" + std::to_string(len) +
                ") is outside its " + std::to_string(spec_.size) + " bytes");
  return std::span<uint8_t>(host_ + offset, len);
}

}  // namespace gears::vmm::shm
