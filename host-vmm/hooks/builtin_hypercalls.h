// gears-vmm's own hypercalls (service 0), available with no service loaded: a liveness check
// and two calls that touch guest memory, so guests (and tests) can exercise the whole path,
// bad pointers and sizes included.
//   GEARS_HC_MAKE(0, 1) ping(x)            -> x + 1
//   GEARS_HC_MAKE(0, 2) sum(ptr, len)      -> sum of len bytes at ptr; -E2BIG if len > GEARS_MAX_ARG_BYTES,
//                                            -EFAULT if any byte is not readable by the caller
//   GEARS_HC_MAKE(0, 3) strlen(ptr)        -> length of the NUL-terminated string at ptr (<= 4096),
//                                            -EFAULT / -ENAMETOOLONG
#pragma once

#include "gears/expected.h"
#include "tools/hypercall/dispatcher.h"

namespace gears::vmm::hooks {

inline constexpr uint32_t kHcPing = 1;
inline constexpr uint32_t kHcSum = 2;
inline constexpr uint32_t kHcStrlen = 3;

Expected<void> register_builtin_hypercalls(hypercall::HypercallDispatcher& d);

}  // namespace gears::vmm::hooks
