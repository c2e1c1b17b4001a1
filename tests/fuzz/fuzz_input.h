// The fuzz targets' reader of their input: takes trivially copyable values front to back,
// zeros once the input is used up (so every program of operations is well defined).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

struct FuzzInput {
  const uint8_t* p;
  size_t n;
  template <class T>
    requires std::is_trivially_copyable_v<T>
  T take() {
    T v{};
    const size_t k = n < sizeof v ? n : sizeof v;
    std::memcpy(&v, p, k);
    p += k, n -= k;
    return v;
  }
};
