// gears::Expected<T>: errors as values at module boundaries.
//
// g++ 12 ships std::expected only in C++23 mode and the project is C++20, so this is a small
// subset of the same interface (has_value, value, error, operator*, operator->, bool). When the
// toolchain moves to C++23 this header can become an alias of std::expected.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>

namespace gears {

// An error: a one-line human-readable message and, where the cause was a system call, its errno.
struct Error {
  std::string message;
  int sys_errno = 0;

  // "message: strerror(errno)" when an errno is attached.
  std::string what() const {
    if (sys_errno == 0) return message;
    return message + ": " + std::strerror(sys_errno);
  }
};

template <class E>
struct Unexpected {
  E error;
};

// Shorthands: `return gears::fail("bad kernel image");`, `return gears::fail_errno("open", errno);`
inline Unexpected<Error> fail(std::string message) { return {Error{std::move(message), 0}}; }
inline Unexpected<Error> fail_errno(std::string message, int err = errno) {
  return {Error{std::move(message), err}};
}
inline Unexpected<Error> fail(Error e) { return {std::move(e)}; }

template <class T, class E = Error>
class [[nodiscard]] Expected {
 public:
  using value_type = T;
  using error_type = E;

  template <class U = T>
    requires std::is_constructible_v<T, U&&>
  Expected(U&& v) : v_(std::in_place_index<0>, std::forward<U>(v)) {}  // NOLINT: implicit like std::expected
  template <class G>
  Expected(Unexpected<G> u) : v_(std::in_place_index<1>, std::move(u.error)) {}  // NOLINT

  bool has_value() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return has_value(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  E& error() & { return std::get<1>(v_); }
  const E& error() const& { return std::get<1>(v_); }

  template <class U>
  T value_or(U&& fallback) const& {
    return has_value() ? value() : static_cast<T>(std::forward<U>(fallback));
  }

 private:
  std::variant<T, E> v_;
};

template <class E>
class [[nodiscard]] Expected<void, E> {
 public:
  Expected() = default;
  template <class G>
  Expected(Unexpected<G> u) : err_(std::move(u.error)), ok_(false) {}  // NOLINT

  bool has_value() const noexcept { return ok_; }
  explicit operator bool() const noexcept { return ok_; }
  void value() const {}
  E& error() & { return err_; }
  const E& error() const& { return err_; }

 private:
  E err_{};
  bool ok_ = true;
};

// Propagate an error from an expression returning Expected<...>:
//   GEARS_TRY(mem.write(gpa, data));
// The temporary's name is unique per use (__COUNTER__), so GEARS_TRY nests (a lambda inside a
// GEARS_TRY argument may use GEARS_TRY) without -Wshadow.
#define GEARS_TRY_CONCAT_(a, b) a##b
#define GEARS_TRY_NAME_(n) GEARS_TRY_CONCAT_(gears_try_r_, n)
#define GEARS_TRY(expr) GEARS_TRY_IMPL_(expr, GEARS_TRY_NAME_(__COUNTER__))
#define GEARS_TRY_IMPL_(expr, name)                                   \
  do {                                                                \
    if (auto name = (expr); !name)                                    \
      return ::gears::Unexpected<::gears::Error>{name.error()};       \
  } while (0)

}  // namespace gears
