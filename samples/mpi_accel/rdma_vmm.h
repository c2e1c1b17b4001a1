// The MPI accelerator's one-copy path, VMM side (doc/mpi-accel.md, "One copy"): the
// registration table in the VM group's VMM-only area and the copy between two VMs' RAM.
// Header-only so that the unit tests drive it against a hostile "guest" without a VM.
//
// The table: GEARS_MPI_RDMA_MEMBERS slices (one per group member, written by that member's VMM
// only), GEARS_MPI_RDMA_KEYS entries each. An entry is (cookie, extent list's guest-physical
// address, extent count, length); cookie 0 is a free entry. The owner publishes an entry by
// storing its cookie last (release) and frees it by storing 0 first; a reader checks the cookie
// it was given before and after reading the other fields. Cookies come from getrandom and are
// never reused, so a peer can read only registrations whose cookie its guest was sent.
//
// Every guest value is untrusted: extent lists are copied before use, every extent is checked
// against the owning VM's RAM (GuestRam / VmGroup::read_member_ram), every sum for overflow.
#pragma once

#include <sys/random.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include <gears/expected.h>
#include <gears/vmm/vm_group.h>

#include "btl/gears_mpi_rdma.h"

namespace mpi_rdma {

// This VM's RAM by guest-physical range (ServiceHost::guest_physical).
using GuestRam = std::function<gears::Expected<std::span<std::uint8_t>>(std::uint64_t gpa, std::uint64_t len)>;

class VmmSide {
 public:
  static constexpr std::uint64_t kSliceBytes = std::uint64_t{GEARS_MPI_RDMA_KEYS} * GEARS_MPI_RDMA_ENTRY_SIZE;
  static constexpr std::uint64_t kTableBytes = kSliceBytes * GEARS_MPI_RDMA_MEMBERS;
  static_assert(GEARS_MPI_RDMA_MEMBERS == gears::vmm::VmGroup::kMaxMembers);

  // Empty string: ready. Clears this VM's slice (a previous deploy's entries are gone with it).
  std::string attach(gears::vmm::VmGroup* group, GuestRam ram) {
    if (!group) return "no VM group";
    if (group->vmm_area().size() < kTableBytes)
      return "the VM group's VMM area has " + std::to_string(group->vmm_area().size()) + " bytes, the table needs " +
             std::to_string(kTableBytes);
    std::lock_guard lock(mu_);
    group_ = group;
    ram_ = std::move(ram);
    clear_own_slice();
    return {};
  }

  VmmSide() = default;
  VmmSide(const VmmSide&) = delete;
  VmmSide& operator=(const VmmSide&) = delete;
  // At undeploy (the plugin's static objects go with it): no peer may read this VM's RAM
  // through a registration its guest can no longer withdraw.
  ~VmmSide() { detach(); }

  // Frees every registration of this VM.
  void detach() {
    std::lock_guard lock(mu_);
    if (group_) clear_own_slice();
    group_ = nullptr;
  }

  std::int64_t member() const { return group_ ? static_cast<std::int64_t>(group_->self()) : -ENODEV; }

  // Publishes the extent list at [list_gpa, +count * 16) describing `len` bytes; writes the
  // cookie to cookie_gpa. Returns the key, or a negative errno.
  std::int64_t reg(std::uint64_t list_gpa, std::uint64_t count, std::uint64_t len, std::uint64_t cookie_gpa) {
    std::lock_guard lock(mu_);
    if (!group_) return -ENODEV;
    std::vector<gears_rdma_extent> list;
    if (std::int64_t rc = copy_local_list(list_gpa, count, list); rc < 0) return refuse(rc);
    std::uint64_t sum = 0;
    for (const auto& e : list) {
      if (!ram_(e.gpa, e.len)) return refuse(-EFAULT);  // the pages must be this VM's RAM
      sum += e.len;  // no overflow: each len <= GEARS_MPI_RDMA_MAX_LEN, count bounded
    }
    if (len == 0 || sum != len) return refuse(-EINVAL);
    auto cookie_at = ram_(cookie_gpa, sizeof(std::uint64_t));
    if (!cookie_at) return refuse(-EFAULT);
    std::uint64_t cookie = 0;
    if (getrandom(&cookie, sizeof cookie, 0) != static_cast<ssize_t>(sizeof cookie)) return refuse(-EAGAIN);
    cookie |= 1;  // never 0 (a free entry)
    for (std::uint32_t n = 0; n < GEARS_MPI_RDMA_KEYS; ++n) {
      const std::uint32_t key = (next_key_ + n) % GEARS_MPI_RDMA_KEYS;
      std::uint64_t* e = entry(group_->self(), key);
      if (std::atomic_ref<std::uint64_t>(e[0]).load(std::memory_order_relaxed) != 0) continue;
      std::atomic_ref<std::uint64_t>(e[1]).store(list_gpa, std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(e[2]).store(count, std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(e[3]).store(len, std::memory_order_relaxed);
      std::atomic_ref<std::uint64_t>(e[0]).store(cookie, std::memory_order_release);
      std::memcpy(cookie_at->data(), &cookie, sizeof cookie);
      next_key_ = key + 1;
      registered_.fetch_add(1, std::memory_order_relaxed);
      return key;
    }
    return refuse(-ENOSPC);
  }

  std::int64_t dereg(std::uint64_t key, std::uint64_t cookie) {
    std::lock_guard lock(mu_);
    if (!group_) return -ENODEV;
    if (key >= GEARS_MPI_RDMA_KEYS || cookie == 0) return refuse(-EINVAL);
    std::uint64_t expected = cookie;
    if (!std::atomic_ref<std::uint64_t>(entry(group_->self(), static_cast<std::uint32_t>(key))[0])
             .compare_exchange_strong(expected, 0, std::memory_order_acq_rel))
      return refuse(-ENOENT);
    return 0;
  }

  // Copies [offset, offset + total) of registration (member, key, cookie) into this VM's RAM
  // described by the extent list at [list_gpa, +count * 16). `member_key` = member << 32 | key.
  // Returns the bytes copied (the local list's total), or a negative errno.
  std::int64_t get(std::uint64_t member_key, std::uint64_t cookie, std::uint64_t offset, std::uint64_t list_gpa,
                   std::uint64_t count) {
    gears::vmm::VmGroup* group = group_;
    if (!group) return -ENODEV;
    const std::uint64_t member = member_key >> 32, key = member_key & 0xffffffffu;
    if (member >= GEARS_MPI_RDMA_MEMBERS || key >= GEARS_MPI_RDMA_KEYS || cookie == 0) return refuse(-EINVAL);
    std::vector<gears_rdma_extent> local;
    if (std::int64_t rc = copy_local_list(list_gpa, count, local); rc < 0) return refuse(rc);
    std::uint64_t total = 0;
    for (const auto& e : local) total += e.len;

    // The registration, as its owner's VMM published it.
    std::uint64_t* e = entry(static_cast<std::uint32_t>(member), static_cast<std::uint32_t>(key));
    if (std::atomic_ref<std::uint64_t>(e[0]).load(std::memory_order_acquire) != cookie) return refuse(-ENOENT);
    const std::uint64_t rlist = std::atomic_ref<std::uint64_t>(e[1]).load(std::memory_order_relaxed);
    const std::uint64_t rcount = std::atomic_ref<std::uint64_t>(e[2]).load(std::memory_order_relaxed);
    const std::uint64_t rlen = std::atomic_ref<std::uint64_t>(e[3]).load(std::memory_order_relaxed);
    if (std::atomic_ref<std::uint64_t>(e[0]).load(std::memory_order_acquire) != cookie) return refuse(-ENOENT);
    if (rcount == 0 || rcount > GEARS_MPI_RDMA_MAX_EXTENTS) return refuse(-EINVAL);
    if (offset > rlen || total > rlen - offset) return refuse(-ERANGE);
    // Its extent list lives in the owner's guest kernel memory: read it from that VM's RAM.
    std::vector<gears_rdma_extent> remote(rcount);
    if (!group->read_member_ram(static_cast<std::uint32_t>(member), rlist,
                                {reinterpret_cast<std::uint8_t*>(remote.data()), rcount * sizeof(gears_rdma_extent)}))
      return refuse(-EFAULT);

    // Skip to `offset`, then one copy per (local, remote) piece, each range checked by the
    // owner of the memory (own RAM: ram_; the peer's: read_member_ram).
    std::size_t ri = 0;
    std::uint64_t roff = offset;
    while (ri < remote.size() && roff >= remote[ri].len) roff -= remote[ri++].len;
    for (const auto& l : local) {
      auto dst = ram_(l.gpa, l.len);
      if (!dst) return refuse(-EFAULT);
      std::uint64_t done = 0;
      while (done < l.len) {
        if (ri >= remote.size()) return refuse(-EFAULT);  // the owner's list is shorter than it said
        const std::uint64_t n = std::min(l.len - done, remote[ri].len - roff);
        if (n > 0 && !group->read_member_ram(static_cast<std::uint32_t>(member), remote[ri].gpa + roff,
                                             dst->subspan(done, n)))
          return refuse(-EFAULT);
        done += n;
        roff += n;
        if (roff >= remote[ri].len) ++ri, roff = 0;
      }
    }
    gets_.fetch_add(1, std::memory_order_relaxed);
    bytes_.fetch_add(total, std::memory_order_relaxed);
    return static_cast<std::int64_t>(total);
  }

  std::vector<std::pair<std::string, std::uint64_t>> counters() const {
    return {{"rdma_registered", registered_.load()},
            {"rdma_gets", gets_.load()},
            {"rdma_bytes", bytes_.load()},
            {"rdma_refused", refused_.load()}};
  }

 private:
  std::uint64_t* entry(std::uint32_t member, std::uint32_t key) const {
    return reinterpret_cast<std::uint64_t*>(group_->vmm_area().data() + member * kSliceBytes +
                                            std::uint64_t{key} * GEARS_MPI_RDMA_ENTRY_SIZE);
  }
  void clear_own_slice() {
    for (std::uint32_t k = 0; k < GEARS_MPI_RDMA_KEYS; ++k)
      std::atomic_ref<std::uint64_t>(entry(group_->self(), k)[0]).store(0, std::memory_order_release);
  }
  // Copies this VM's extent list (count entries at list_gpa) and checks its shape: 1 ..
  // MAX_EXTENTS extents, each non-empty and at most MAX_LEN, together at most MAX_LEN.
  std::int64_t copy_local_list(std::uint64_t list_gpa, std::uint64_t count, std::vector<gears_rdma_extent>& out) {
    if (count == 0 || count > GEARS_MPI_RDMA_MAX_EXTENTS) return -EINVAL;
    auto raw = ram_(list_gpa, count * sizeof(gears_rdma_extent));
    if (!raw) return -EFAULT;
    out.resize(count);
    std::memcpy(out.data(), raw->data(), raw->size());  // the guest may change it: copy first
    std::uint64_t sum = 0;
    for (const auto& e : out) {
      if (e.len == 0 || e.len > GEARS_MPI_RDMA_MAX_LEN) return -EINVAL;
      sum += e.len;
      if (sum > GEARS_MPI_RDMA_MAX_LEN) return -EINVAL;
    }
    return 0;
  }
  std::int64_t refuse(std::int64_t rc) {
    refused_.fetch_add(1, std::memory_order_relaxed);
    return rc;
  }

  std::mutex mu_;  // reg/dereg/attach: this VM's slice has one writer at a time
  gears::vmm::VmGroup* group_ = nullptr;
  GuestRam ram_;
  std::uint32_t next_key_ = 0;
  std::atomic<std::uint64_t> registered_{0}, gets_{0}, bytes_{0}, refused_{0};
};

}  // namespace mpi_rdma
