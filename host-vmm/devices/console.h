// The host end of the serial console: where guest output goes (stdout, a file, or a UNIX
// socket client) and where input comes from (stdin in raw mode if it is a tty, or the socket
// client). It also watches the output for a kernel panic, so the reset that panic=-1 causes
// can be reported as a panic. Ctrl-A x on a tty ends the VM.
#pragma once

#include <termios.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>

#include "core/run_control.h"
#include "gears/expected.h"

namespace gears::vmm::devices {

struct ConsoleSpec {
  enum class Kind { Stdio, File, Socket, None };
  Kind kind = Kind::Stdio;
  std::string path;
};

// "stdio", "none", "file:PATH", "socket:PATH".
Expected<ConsoleSpec> parse_console_spec(const std::string& s);

// Matches "Kernel panic - not syncing" in a byte stream.
class PanicWatch {
 public:
  bool feed(uint8_t c);  // true once, when the pattern completes
 private:
  size_t matched_ = 0;
};

class Console {
 public:
  static Expected<std::unique_ptr<Console>> open(const ConsoleSpec& spec, RunControl& control);
  ~Console();
  Console(const Console&) = delete;
  Console& operator=(const Console&) = delete;

  // A byte from the guest.
  void output(uint8_t c);
  // Starts the input thread; `sink` receives host bytes for the guest.
  void start_input(std::function<void(std::span<const uint8_t>)> sink);

 private:
  Console(RunControl& control) : control_(control) {}
  void input_loop();
  void flush_locked();

  RunControl& control_;
  ConsoleSpec spec_;
  std::atomic<int> out_fd_{-1};
  int in_fd_ = -1;
  int listen_fd_ = -1;
  int stop_fd_ = -1;  // eventfd that wakes the input thread at exit
  bool owns_out_ = false;
  bool raw_tty_ = false;
  termios saved_{};
  std::mutex out_mu_;    // vCPU threads write concurrently
  std::string out_buf_;  // file consoles: written a line at a time (a byte per write is slow on 9p/NFS)
  PanicWatch panic_;
  std::function<void(std::span<const uint8_t>)> sink_;
  std::thread input_;
};

}  // namespace gears::vmm::devices
