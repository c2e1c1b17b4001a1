#include "core/vcpu.h"

#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "core/kvm_abi.h"
#include "gears/abi/hypercall.h"

namespace gears::vmm {

namespace {

// The kick signal: its handler does nothing, its only job is to make KVM_RUN return EINTR.
constexpr int kKickSignal = SIGUSR1;

void install_kick_handler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa{};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must come back with EINTR
    sigaction(kKickSignal, &sa, nullptr);
  });
}

struct MsrBuf {
  kvm_abi::NentHeader hdr;
  kvm_msr_entry entry;
};

}  // namespace

Expected<std::unique_ptr<Vcpu>> Vcpu::create(Vm& vm, int id, RunControl& control) {
  install_kick_handler();
  std::unique_ptr<Vcpu> v(new Vcpu(vm, id, control));
  v->fd_ = ::ioctl(vm.fd(), KVM_CREATE_VCPU, id);
  if (v->fd_ < 0) return fail_errno("KVM_CREATE_VCPU " + std::to_string(id));
  v->run_size_ = static_cast<size_t>(vm.kvm().vcpu_mmap_size());
  void* p = ::mmap(nullptr, v->run_size_, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd_, 0);
  if (p == MAP_FAILED) return fail_errno("mmap kvm_run");
  v->run_ = static_cast<kvm_run*>(p);
  // Registers come back in kvm_run with every exit: handlers read them without extra ioctls.
  if (vm.kvm().check_extension(KVM_CAP_SYNC_REGS) & KVM_SYNC_X86_REGS) v->run_->kvm_valid_regs = KVM_SYNC_X86_REGS;
  return v;
}

Vcpu::~Vcpu() {
  if (thread_.joinable()) {
    control_.request_stop(StopReason::HostRequest);
    kick();
    thread_.join();
  }
  if (run_) ::munmap(run_, run_size_);
  if (fd_ >= 0) ::close(fd_);
}

Expected<void> Vcpu::set_cpuid(const std::vector<kvm_cpuid_entry2>& entries) {
  std::vector<uint64_t> buf((sizeof(kvm_abi::NentHeader) + entries.size() * sizeof(kvm_cpuid_entry2) + 7) / 8);
  auto* hdr = reinterpret_cast<kvm_abi::NentHeader*>(buf.data());
  hdr->n = static_cast<uint32_t>(entries.size());
  std::memcpy(hdr + 1, entries.data(), entries.size() * sizeof(kvm_cpuid_entry2));
  if (::ioctl(fd_, kvm_abi::kSetCpuid2, hdr) < 0) return fail_errno("KVM_SET_CPUID2");
  return {};
}

Expected<kvm_regs> Vcpu::regs() const {
  kvm_regs r{};
  if (::ioctl(fd_, KVM_GET_REGS, &r) < 0) return fail_errno("KVM_GET_REGS");
  return r;
}
Expected<kvm_sregs> Vcpu::sregs() const {
  kvm_sregs s{};
  if (::ioctl(fd_, KVM_GET_SREGS, &s) < 0) return fail_errno("KVM_GET_SREGS");
  return s;
}
Expected<void> Vcpu::set_regs(const kvm_regs& r) {
  if (::ioctl(fd_, KVM_SET_REGS, &r) < 0) return fail_errno("KVM_SET_REGS");
  return {};
}
Expected<void> Vcpu::set_sregs(const kvm_sregs& s) {
  if (::ioctl(fd_, KVM_SET_SREGS, &s) < 0) return fail_errno("KVM_SET_SREGS");
  return {};
}
Expected<uint64_t> Vcpu::get_msr(uint32_t index) const {
  MsrBuf b{};
  b.hdr.n = 1;
  b.entry.index = index;
  if (::ioctl(fd_, kvm_abi::kGetMsrs, &b) != 1) return fail_errno("KVM_GET_MSRS");
  return static_cast<uint64_t>(b.entry.data);
}
Expected<void> Vcpu::set_msr(uint32_t index, uint64_t value) {
  MsrBuf b{};
  b.hdr.n = 1;
  b.entry.index = index;
  b.entry.data = value;
  if (::ioctl(fd_, kvm_abi::kSetMsrs, &b) != 1) return fail_errno("KVM_SET_MSRS");
  return {};
}

Expected<void> Vcpu::set_guest_debug(const kvm_guest_debug& dbg) {
  if (::ioctl(fd_, KVM_SET_GUEST_DEBUG, &dbg) < 0) return fail_errno("KVM_SET_GUEST_DEBUG");
  return {};
}

namespace {
thread_local Vcpu* tls_current = nullptr;
}  // namespace

Vcpu* Vcpu::current() { return tls_current; }

Expected<uint64_t> Vcpu::address_space() {
  constexpr uint64_t kRootMask = 0x000f'ffff'ffff'f000ULL;  // bits 51:12; PCID and flags off
  if (run_->kvm_valid_regs & KVM_SYNC_X86_SREGS) return run_->s.regs.sregs.cr3 & kRootMask;
  auto s = sregs();
  if (!s) return fail(s.error());
  return s->cr3 & kRootMask;
}

void Vcpu::start() {
  started_.store(true);
  thread_ = std::thread([this] {
    tls_current = this;
    loop();
  });
  tid_.store(thread_.native_handle());
}

void Vcpu::join() {
  if (thread_.joinable()) thread_.join();
}

void Vcpu::kick() {
  if (!started_.load()) return;
  __atomic_store_n(&run_->immediate_exit, 1, __ATOMIC_SEQ_CST);
  // tid_ is set by the thread itself; until then immediate_exit alone stops the first KVM_RUN.
  if (pthread_t t = tid_.load(); t != pthread_t{}) pthread_kill(t, kKickSignal);
}

std::future<void> Vcpu::run_on_thread(std::function<void(Vcpu&)> fn) {
  std::packaged_task<void()> task([this, f = std::move(fn)] { f(*this); });
  auto fut = task.get_future();
  if (!started_.load()) {
    task();
    return fut;
  }
  {
    std::lock_guard lock(work_mu_);
    work_.push_back(std::move(task));
  }
  kick();
  return fut;
}

void Vcpu::drain_work() {
  std::deque<std::packaged_task<void()>> todo;
  {
    std::lock_guard lock(work_mu_);
    todo.swap(work_);
  }
  for (auto& t : todo) t();
}

void Vcpu::loop() {
  while (!control_.stopping()) {
    drain_work();
    if (control_.stopping()) break;
    if (::ioctl(fd_, KVM_RUN, 0) < 0) {
      int e = errno;
      if (e == EINTR || e == EAGAIN) {
        __atomic_store_n(&run_->immediate_exit, 0, __ATOMIC_SEQ_CST);
        continue;
      }
      fail_run(std::string("KVM_RUN failed: ") + std::strerror(e));
      break;
    }
    if (!handle_exit()) break;
  }
  // Work queued after the loop ended still completes, so nobody waits forever on a future.
  drain_work();
}

void Vcpu::fail_run(const std::string& what) {
  control_.request_stop(StopReason::Error, "vCPU " + std::to_string(id_) + ": " + what + " (" + describe_state() + ")");
}

std::string Vcpu::describe_state() const {
  auto r = regs();
  auto s = sregs();
  if (!r || !s) return "registers unavailable";
  char buf[320];
  std::snprintf(buf, sizeof buf,
                "rip=0x%llx rsp=0x%llx rax=0x%llx rflags=0x%llx cs=0x%x cr0=0x%llx cr3=0x%llx cr4=0x%llx efer=0x%llx",
                r->rip, r->rsp, r->rax, r->rflags, s->cs.selector, s->cr0, s->cr3, s->cr4, s->efer);
  return buf;
}

bool Vcpu::count_exits_enabled() {
  const char* v = std::getenv("GEARS_VMM_COUNT_EXITS");
  return v && std::strcmp(v, "1") == 0;
}

ExitCounts Vcpu::exit_counts() const {
  ExitCounts c;
  c.io = exits_[kIo].load(std::memory_order_relaxed);
  c.hypercall = exits_[kHypercall].load(std::memory_order_relaxed);
  c.mmio = exits_[kMmio].load(std::memory_order_relaxed);
  c.msr = exits_[kMsr].load(std::memory_order_relaxed);
  c.intr = exits_[kIntr].load(std::memory_order_relaxed);
  c.debug = exits_[kDebug].load(std::memory_order_relaxed);
  c.other = exits_[kOther].load(std::memory_order_relaxed);
  c.total = c.io + c.mmio + c.msr + c.intr + c.debug + c.other;
  c.counting = count_exits_;
  return c;
}

bool Vcpu::handle_exit() {
  switch (run_->exit_reason) {
    case KVM_EXIT_IO:
      count_exit(kIo);
      if (run_->io.port == GEARS_DOORBELL_PORT) count_exit(kHypercall);
      return handle_io();
    case KVM_EXIT_MMIO: count_exit(kMmio); return handle_mmio();
    case KVM_EXIT_X86_RDMSR: count_exit(kMsr); return handle_msr(false);
    case KVM_EXIT_X86_WRMSR: count_exit(kMsr); return handle_msr(true);
    case KVM_EXIT_INTR: count_exit(kIntr); return true;
    case KVM_EXIT_DEBUG:
      count_exit(kDebug);
      if (const auto& h = vm_.debug_handler(); h && h(*this, *run_)) return !control_.stopping();
      fail_run("unexpected debug exit at pc 0x" + [&] {
        char b[24];
        std::snprintf(b, sizeof b, "%llx", static_cast<unsigned long long>(run_->debug.arch.pc));
        return std::string(b);
      }());
      return false;
    case KVM_EXIT_SHUTDOWN:
      // A triple fault (or a reset the guest forced by one).
      control_.request_stop(StopReason::TripleFault, "vCPU " + std::to_string(id_) + ": " + describe_state());
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run_->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN: control_.request_stop(StopReason::PowerOff); break;
        case KVM_SYSTEM_EVENT_RESET: control_.request_stop(StopReason::Reboot); break;
        case KVM_SYSTEM_EVENT_CRASH: control_.request_stop(StopReason::Panic, "guest crash event"); break;
        default: fail_run("unknown system event " + std::to_string(run_->system_event.type)); break;
      }
      return false;
    case KVM_EXIT_HLT:
      // With the in-kernel LAPIC, HLT never reaches user space; if it does, re-entering would
      // spin, so stop with a report.
      fail_run("unexpected HLT exit");
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      fail_run("KVM internal error, suberror " + std::to_string(run_->internal.suberror));
      return false;
    case KVM_EXIT_FAIL_ENTRY: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "VM entry failed, reason 0x%llx",
                    static_cast<unsigned long long>(run_->fail_entry.hardware_entry_failure_reason));
      fail_run(buf);
      return false;
    }
    default:
      count_exit(kOther);
      fail_run("unhandled exit reason " + std::to_string(run_->exit_reason));
      return false;
  }
}

bool Vcpu::handle_io() {
  auto& io = run_->io;
  for (const PioObserver& o : vm_.pio_observers())
    if (o.port == io.port && o.on_exit(*this, *run_)) return !control_.stopping();
  // Guard the data window: KVM sets it, but a bad offset must never make us touch other memory.
  uint64_t bytes = static_cast<uint64_t>(io.size) * io.count;
  if (io.size == 0 || io.size > 8 || io.data_offset > run_size_ || bytes > run_size_ - io.data_offset) {
    fail_run("malformed port-I/O exit");
    return false;
  }
  auto* data = reinterpret_cast<uint8_t*>(run_) + io.data_offset;
  for (uint32_t i = 0; i < io.count; ++i) {
    uint8_t* p = data + static_cast<size_t>(i) * io.size;
    if (io.direction == KVM_EXIT_IO_IN) {
      if (!vm_.pio().read(io.port, std::span<uint8_t>(p, io.size))) std::memset(p, 0xff, io.size);
    } else {
      vm_.pio().write(io.port, std::span<const uint8_t>(p, io.size));
    }
  }
  return !control_.stopping();
}

bool Vcpu::handle_mmio() {
  auto& m = run_->mmio;
  if (m.len == 0 || m.len > sizeof m.data) {
    fail_run("malformed MMIO exit");
    return false;
  }
  if (m.is_write) {
    vm_.mmio().write(m.phys_addr, std::span<const uint8_t>(m.data, m.len));
  } else if (!vm_.mmio().read(m.phys_addr, std::span<uint8_t>(m.data, m.len))) {
    std::memset(m.data, 0xff, m.len);
  }
  return !control_.stopping();
}

bool Vcpu::handle_msr(bool write) {
  auto& m = run_->msr;
  const MsrHandler& h = vm_.msr_handler();
  bool ok = false;
  if (write) {
    ok = h.write && h.write(*this, m.index, m.data);
  } else {
    uint64_t v = 0;
    ok = h.read && h.read(*this, m.index, v);
    if (ok) m.data = v;
  }
  m.error = ok ? 0 : 1;  // 1: KVM injects #GP
  return !control_.stopping();
}

}  // namespace gears::vmm
