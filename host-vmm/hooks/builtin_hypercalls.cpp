#include "hooks/builtin_hypercalls.h"

#include <cerrno>
#include <vector>

namespace gears::vmm::hooks {

Expected<void> register_builtin_hypercalls(hypercall::HypercallDispatcher& d) {
  GEARS_TRY(d.add(static_cast<uint32_t>(GEARS_HC_MAKE(0, kHcPing)),
                  [](GuestContext&, const HypercallArgs& a) -> int64_t { return static_cast<int64_t>(a.regs[0] + 1); }));
  GEARS_TRY(d.add(static_cast<uint32_t>(GEARS_HC_MAKE(0, kHcSum)), [](GuestContext& g, const HypercallArgs& a) -> int64_t {
    const uint64_t ptr = a.regs[0], len = a.regs[1];
    if (len > GEARS_MAX_ARG_BYTES) return -E2BIG;
    std::vector<uint8_t> buf(len);
    if (len && !g.read(ptr, buf.data(), buf.size())) return -EFAULT;
    int64_t sum = 0;
    for (uint8_t b : buf) sum += b;
    return sum;
  }));
  GEARS_TRY(d.add(static_cast<uint32_t>(GEARS_HC_MAKE(0, kHcStrlen)), [](GuestContext& g, const HypercallArgs& a) -> int64_t {
    auto s = g.read_string(a.regs[0], 4096);
    if (!s) return s.error().what().find("NUL") != std::string::npos ? -ENAMETOOLONG : -EFAULT;
    return static_cast<int64_t>(s->size());
  }));
  return {};
}

}  // namespace gears::vmm::hooks
