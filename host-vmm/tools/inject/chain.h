// A Chain: work done *inside* a borrowed guest thread, written as a C++20 coroutine.
//
// The injection engine (borrow_engine.h) borrows a guest thread at a syscall entry and then
// drives the chain: each `co_await` hands the engine one request, which the borrowed thread
// carries out in the guest, and the coroutine resumes with its result:
//
//   Chain load(ChainContext& cx, std::vector<uint8_t> image) {
//     GEARS_CO_TRY(uint64_t buf, co_await cx.scratch(image.size()));  // mmap in the process
//     GEARS_CO_TRY_VOID(cx.write(buf, image));                       // VMM writes guest memory
//     int64_t r = co_await cx.syscall(175 /*init_module*/, buf, image.size(), params);
//     co_return r;
//   }
//
// Requests: syscall(nr, args...) runs one system call in the thread (its result or -errno);
// call(fn, args...) calls a user-mode function of the process on a private stack (its RAX);
// scratch(len) maps private RWX memory in the process once (unmapped when the chain ends).
// Between requests the chain runs on a vCPU thread, with the borrowed process's address space
// reachable through cx.space() (valid only until the next co_await).
#pragma once

#include <array>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "gears/expected.h"
#include "tools/introspect/address_space.h"

namespace gears::vmm::inject {

// One request from a chain to the engine.
struct Request {
  enum class Kind { none, syscall, call, scratch } kind = Kind::none;
  uint64_t nr_or_fn = 0;  // syscall number, or the user function's address
  std::array<uint64_t, 6> args{};
  uint64_t scratch_len = 0;
};

// What the chain finally returns: a value (>= 0 by convention) or an error with a message.
using ChainResult = Expected<int64_t>;

class Chain {
 public:
  struct promise_type {
    Request pending;
    int64_t answer = 0;
    std::optional<ChainResult> result;

    Chain get_return_object() { return Chain(std::coroutine_handle<promise_type>::from_promise(*this)); }
    std::suspend_always initial_suspend() noexcept { return {}; }
    std::suspend_always final_suspend() noexcept { return {}; }
    void return_value(ChainResult r) { result = std::move(r); }
    void unhandled_exception() { result = fail("injection chain threw an exception"); }
  };

  Chain() = default;
  explicit Chain(std::coroutine_handle<promise_type> h) : h_(h) {}
  Chain(Chain&& o) noexcept : h_(std::exchange(o.h_, {})) {}
  Chain& operator=(Chain&& o) noexcept {
    if (this != &o) {
      destroy();
      h_ = std::exchange(o.h_, {});
    }
    return *this;
  }
  Chain(const Chain&) = delete;
  Chain& operator=(const Chain&) = delete;
  ~Chain() { destroy(); }

  bool valid() const { return static_cast<bool>(h_); }
  // Runs the chain until its next request (returned) or its end (Request::Kind::none, then
  // result() is set). `answer` is the previous request's result.
  Request step(int64_t answer) {
    if (!h_ || h_.done()) return {};
    h_.promise().answer = answer;
    h_.promise().pending = {};
    h_.resume();
    if (h_.done()) return {};
    return h_.promise().pending;
  }
  bool done() const { return !h_ || h_.done(); }
  ChainResult result() const {
    if (!h_ || !h_.promise().result) return fail("injection chain ended without a result");
    return *h_.promise().result;
  }

 private:
  void destroy() {
    if (h_) h_.destroy();
    h_ = {};
  }
  std::coroutine_handle<promise_type> h_;
};

// The awaitable behind every request: suspends with the request recorded in the promise and
// resumes with the engine's answer.
struct RequestAwaiter {
  Request request;
  Chain::promise_type* promise = nullptr;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<Chain::promise_type> h) noexcept {
    promise = &h.promise();
    promise->pending = request;
  }
  int64_t await_resume() const noexcept { return promise->answer; }
};

// What a chain sees of the borrowed thread. The engine refreshes it before each resumption.
class ChainContext {
 public:
  template <class... A>
  RequestAwaiter syscall(uint64_t nr, A... a) const {
    static_assert(sizeof...(A) <= 6, "a syscall has at most six arguments");
    Request r{Request::Kind::syscall, nr, {static_cast<uint64_t>(a)...}, 0};
    return {r};
  }
  template <class... A>
  RequestAwaiter call(uint64_t fn, A... a) const {
    static_assert(sizeof...(A) <= 6, "a call has at most six arguments here");
    Request r{Request::Kind::call, fn, {static_cast<uint64_t>(a)...}, 0};
    return {r};
  }
  // Private RWX memory in the process (one area per chain, at least `len` bytes): its address,
  // or -errno from mmap. Asking again returns the same area if it is big enough.
  RequestAwaiter scratch(uint64_t len) const { return {Request{Request::Kind::scratch, 0, {}, len}}; }

  // The borrowed process's memory (user access rights: the chain acts as the process would).
  introspect::AddressSpace& space() { return *space_; }
  Expected<void> write(uint64_t gva, std::span<const uint8_t> bytes) {
    return space_->write(gva, bytes, introspect::Access::user_write());
  }
  Expected<void> write_string(uint64_t gva, const std::string& s) {
    return write(gva, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.c_str()), s.size() + 1));
  }
  Expected<std::string> read_string(uint64_t gva, uint64_t max) const {
    return space_->read_string(gva, max, introspect::Access::user_read());
  }
  Expected<void> read(uint64_t gva, std::span<uint8_t> out) const {
    return space_->read(gva, out, introspect::Access::user_read());
  }

  // Set by the engine.
  void bind(introspect::AddressSpace* space) { space_ = space; }
  // The user-half area the chain may use past the engine's trampoline (scratch + this offset).
  static constexpr uint64_t kTrampolineBytes = 256;
  static constexpr uint64_t kStackBytes = 64 * 1024;

 private:
  introspect::AddressSpace* space_ = nullptr;
};

}  // namespace gears::vmm::inject

// Inside a Chain: propagate an Expected's error as the chain's result.
#define GEARS_CO_TRY_VOID(expr)                                   \
  do {                                                            \
    auto&& gears_co_r_ = (expr);                                  \
    if (!gears_co_r_) co_return ::gears::fail(gears_co_r_.error().what()); \
  } while (0)
