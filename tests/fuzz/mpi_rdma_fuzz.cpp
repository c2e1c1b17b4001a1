// Fuzz target: the MPI accelerator's one-copy path, VMM side (samples/mpi_accel/rdma_vmm.h),
// against two hostile guests. The input is a program of operations: guests write anything
// anywhere in their RAM (extent lists, cookies), then call register / deregister / get with
// arguments taken from the input or from earlier answers (so the deep paths are reached).
// Properties: no crash (ASan/UBSan); a get answers a negative errno or exactly the length its
// own extent list describes; nothing is ever written outside the receiver's RAM.
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <span>
#include <vector>

#include "fuzz_input.h"
#include "rdma_vmm.h"

namespace {

constexpr uint64_t kRam = 64 << 10;  // each guest's RAM: [0, 64 KiB)

// The group's memory: the VMM area and both guests' RAM; one view of it per VMM (member 0 is
// the sender A, member 1 the receiver B). read_member_ram is bounds-checked like gears-vmm's.
struct Memory {
  std::vector<uint8_t> area = std::vector<uint8_t>(2 << 20);
  std::vector<uint8_t> ram[2] = {std::vector<uint8_t>(kRam), std::vector<uint8_t>(kRam)};
};

struct View final : gears::vmm::VmGroup {
  Memory& m;
  uint32_t me;
  View(Memory& memory, uint32_t self_id) : m(memory), me(self_id) {}
  uint32_t self() const override { return me; }
  std::span<uint8_t> vmm_area() override { return m.area; }
  gears::Expected<void> read_member_ram(uint32_t member, uint64_t gpa, std::span<uint8_t> out) override {
    if (member > 1 || gpa > kRam || out.size() > kRam - gpa) return gears::fail("outside");
    std::memcpy(out.data(), m.ram[member].data() + gpa, out.size());
    return {};
  }
};

mpi_rdma::GuestRam ram_of(std::vector<uint8_t>& ram) {
  return [&ram](uint64_t gpa, uint64_t len) -> gears::Expected<std::span<uint8_t>> {
    if (gpa > kRam || len > kRam - gpa) return gears::fail("outside");
    return std::span<uint8_t>(ram.data() + gpa, len);
  };
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in{data, size};
  // One allocation for the whole run (attach clears each VM's table slice; RAM cleared here).
  static Memory mem;
  for (auto& r : mem.ram) std::fill(r.begin(), r.end(), 0);
  View view_a(mem, 0), view_b(mem, 1);
  mpi_rdma::VmmSide a, b;
  if (!a.attach(&view_a, ram_of(mem.ram[0])).empty() || !b.attach(&view_b, ram_of(mem.ram[1])).empty()) std::abort();

  std::vector<std::pair<uint64_t, uint64_t>> keys;  // (key, cookie) A handed out
  for (int step = 0; step < 64 && in.n > 0; ++step) {
    switch (in.take<uint8_t>() % 5) {
      case 0: {  // a guest writes bytes into its RAM
        const int who = in.take<uint8_t>() & 1;
        const uint64_t at = in.take<uint32_t>() % kRam;
        const size_t len = in.take<uint8_t>();
        for (size_t i = 0; i < len && at + i < kRam; ++i) mem.ram[who][at + i] = in.take<uint8_t>();
        break;
      }
      case 1: {  // A registers
        const uint64_t list = in.take<uint32_t>(), count = in.take<uint16_t>(), len = in.take<uint32_t>();
        const uint64_t cookie_at = in.take<uint32_t>() % kRam;
        const int64_t key = a.reg(list, count, len, cookie_at);
        if (key >= 0) {
          uint64_t cookie = 0;
          if (cookie_at + 8 <= kRam) std::memcpy(&cookie, mem.ram[0].data() + cookie_at, 8);
          keys.emplace_back(static_cast<uint64_t>(key), cookie);
        }
        break;
      }
      case 2: {  // A deregisters (one it made, or anything)
        const uint8_t pick = in.take<uint8_t>();
        if (!keys.empty() && pick < 200) {
          auto [k, c] = keys[pick % keys.size()];
          (void)a.dereg(k, c);
        } else {
          (void)a.dereg(in.take<uint32_t>(), in.take<uint64_t>());
        }
        break;
      }
      case 3:    // B gets from one of A's registrations ...
      case 4: {  // ... or from anything
        uint64_t member_key, cookie;
        if (!keys.empty() && in.take<uint8_t>() < 200) {
          auto [k, c] = keys[in.take<uint8_t>() % keys.size()];
          member_key = k, cookie = c;
        } else {
          member_key = in.take<uint64_t>(), cookie = in.take<uint64_t>();
        }
        const uint64_t offset = in.take<uint32_t>(), list = in.take<uint32_t>(), count = in.take<uint16_t>();
        // B's list as it stands before the get (the copy may land on it).
        uint64_t total = 0;
        if (list <= kRam && count * sizeof(gears_rdma_extent) <= kRam - list) {
          for (uint64_t i = 0; i < count; ++i) {
            gears_rdma_extent e;
            std::memcpy(&e, mem.ram[1].data() + list + i * sizeof e, sizeof e);
            total += e.len;
          }
        }
        const int64_t got = b.get(member_key, cookie, offset, list, count);
        if (got > 0) {  // exactly what B's own list describes
          if (total != static_cast<uint64_t>(got)) std::abort();
        } else if (got < -4095) {
          std::abort();
        }
        break;
      }
    }
  }
  return 0;
}
