// One virtual CPU: its fd, the shared kvm_run page, and the thread that runs KVM_RUN and
// dispatches exits (port I/O and MMIO to the VM's buses, MSR exits to the VM's MsrHandler,
// power events to RunControl). Errors end the run with a report; nothing here may hang.
#pragma once

#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/run_control.h"
#include "core/vm.h"
#include "gears/expected.h"

namespace gears::vmm {

// VM exits this vCPU handled, by kind (gearsctl stats, section "exits"): what a guest-side
// service saves is counted here, when GEARS_VMM_COUNT_EXITS=1 is in gears-vmm's environment. `io` includes the gears doorbell (hypercalls), counted
// again on its own as `hypercall`.
struct ExitCounts {
  uint64_t total = 0, io = 0, hypercall = 0, mmio = 0, msr = 0, intr = 0, debug = 0, other = 0;
  bool counting = false;  // GEARS_VMM_COUNT_EXITS=1: off, every count stays 0
};

class Vcpu {
 public:
  static Expected<std::unique_ptr<Vcpu>> create(Vm& vm, int id, RunControl& control);
  ~Vcpu();
  Vcpu(const Vcpu&) = delete;
  Vcpu& operator=(const Vcpu&) = delete;

  // The vCPU whose thread is calling (a device handling this vCPU's exit), else nullptr.
  static Vcpu* current();
  // The address-space root (CR3 without PCID and flag bits) the guest ran in at this exit:
  // from kvm_run's sync regs when they are on, else KVM_GET_SREGS. On this vCPU's thread.
  Expected<uint64_t> address_space();

  int id() const { return id_; }
  int fd() const { return fd_; }
  Vm& vm() { return vm_; }
  kvm_run& run() { return *run_; }

  // KVM_SET_CPUID2 with correctly sized ioctl (kvm_abi.h).
  Expected<void> set_cpuid(const std::vector<kvm_cpuid_entry2>& entries);
  Expected<kvm_regs> regs() const;
  Expected<kvm_sregs> sregs() const;
  Expected<void> set_regs(const kvm_regs& r);
  Expected<void> set_sregs(const kvm_sregs& s);
  // KVM_GET_MSRS / KVM_SET_MSRS for one MSR. Must run on this vCPU's thread once it runs
  // (use run_on_thread).
  Expected<uint64_t> get_msr(uint32_t index) const;
  Expected<void> set_msr(uint32_t index, uint64_t value);
  // KVM_SET_GUEST_DEBUG (hardware breakpoints, #DB injection). On this vCPU's thread.
  Expected<void> set_guest_debug(const kvm_guest_debug& dbg);

  // Starts the vCPU thread (KVM_RUN loop).
  void start();
  void join();
  // Forces the vCPU out of KVM_RUN (signal + immediate_exit); it then drains its work queue
  // and, unless the VM is stopping, re-enters the guest.
  void kick();
  // Runs `fn` on this vCPU's own thread between two KVM_RUNs (KVM_SET_MSRS and friends must
  // run there). Before start() it runs at once on the caller's thread.
  std::future<void> run_on_thread(std::function<void(Vcpu&)> fn);

  // A one-line register summary, for error reports.
  std::string describe_state() const;

  // Exits so far (any thread; each field read on its own).
  ExitCounts exit_counts() const;

 private:
  Vcpu(Vm& vm, int id, RunControl& control) : vm_(vm), id_(id), control_(control) {}
  void loop();
  void drain_work();
  // Returns false when the run must stop.
  bool handle_exit();
  bool handle_io();
  bool handle_mmio();
  bool handle_msr(bool write);
  void fail_run(const std::string& what);

  Vm& vm_;
  int id_;
  RunControl& control_;
  int fd_ = -1;
  kvm_run* run_ = nullptr;
  size_t run_size_ = 0;
  std::thread thread_;
  std::atomic<pthread_t> tid_{};
  std::atomic<bool> started_{false};
  std::mutex work_mu_;
  std::deque<std::packaged_task<void()>> work_;
  // Written by this vCPU's thread only, read by the control socket's: relaxed atomics, and a
  // plain load and store rather than a locked read-modify-write (one writer; a locked
  // instruction per exit is what the emulated test host handles worst).
  enum ExitKind { kIo, kHypercall, kMmio, kMsr, kIntr, kDebug, kOther, kKinds };
  void count_exit(ExitKind k) {
    if (count_exits_) exits_[k].store(exits_[k].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Off unless GEARS_VMM_COUNT_EXITS=1 (the benchmarks set it): until the test host's guest
  // faults are understood, the exit path stays exactly as it was for everything else.
  const bool count_exits_ = count_exits_enabled();
  static bool count_exits_enabled();
  std::atomic<uint64_t> exits_[kKinds]{};
};

}  // namespace gears::vmm
