// The VMM half's view of gears-vmm: abstract interfaces that gears-vmm implements.
// A service's VMM half is a plugin (.so); it never sees KVM or host-vmm internals, only these.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gears/abi/hypercall.h"
#include "gears/expected.h"
#include "gears/vmm/overlay.h"
#include "gears/vmm/vm_group.h"

namespace gears::vmm {

// Where a hypercall came from.
enum class Origin { guest_user, guest_kernel };

// General-purpose registers of the calling vCPU (x86-64).
enum class Reg { rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp, r8, r9, r10, r11, r12, r13, r14, r15, rip, rflags };

// One vCPU stopped in the guest: valid only during the callback that received it.
// Guest virtual addresses are translated through the guest's page tables of the stopped
// context (GVA -> GPA page walk); every access is bounds-checked and may fail.
class GuestContext {
 public:
  virtual ~GuestContext() = default;
  virtual Expected<void> read(std::uint64_t gva, void* dst, std::size_t len) = 0;
  virtual Expected<void> write(std::uint64_t gva, const void* src, std::size_t len) = 0;
  // A NUL-terminated string of at most `max` bytes (error if longer or unmapped).
  virtual Expected<std::string> read_string(std::uint64_t gva, std::size_t max) = 0;
  virtual std::uint64_t reg(Reg r) const = 0;
  virtual void set_reg(Reg r, std::uint64_t value) = 0;
  virtual int vcpu() const = 0;
  virtual Origin origin() const = 0;
};

struct SyscallEvent {
  std::uint64_t nr = 0;
  std::uint64_t args[6] = {};
  bool is_exit = false;     // false: at entry; true: at exit (result valid)
  std::int64_t result = 0;
};

struct ProcessEvent {
  enum class Kind { exec, exit } kind = Kind::exec;
  int pid = 0;
  std::string comm;  // task name as the guest kernel knows it
};

// Arguments of a hypercall in the order the ABI passes them (abi/hypercall.h).
struct HypercallArgs {
  std::uint64_t number = 0;
  std::uint64_t regs[GEARS_MAX_ARGS] = {};
};

// Result: >= 0 value, or a negative errno.
using HypercallHandler = std::function<std::int64_t(GuestContext&, const HypercallArgs&)>;
using SyscallHandler = std::function<void(GuestContext&, const SyscallEvent&)>;
using ProcessHandler = std::function<void(GuestContext&, const ProcessEvent&)>;

// A data-plane thread gears-vmm runs for a service (ServiceHost::start_poller).
class Poller {
 public:
  virtual ~Poller() = default;
  // Makes a sleeping poller call its function again now. Any thread (a hypercall handler).
  virtual void wake() = 0;
};
// One round of a poller's work: true to be called again at once (it found work or is still
// spinning), false to sleep until wake() or the poller's idle period has passed.
using PollFn = std::function<bool()>;
// A service's counters by name, for `gearsctl stats` (section "services") and `services`.
using CountersFn = std::function<std::vector<std::pair<std::string, std::uint64_t>>()>;

// What gears-vmm offers a loaded service.
class ServiceHost {
 public:
  virtual ~ServiceHost() = default;
  virtual Expected<void> register_hypercall(std::uint32_t number, HypercallHandler handler) = 0;
  // Selective syscall exiting: only the named syscall numbers leave the guest.
  virtual Expected<void> on_syscall(std::span<const std::uint32_t> numbers, SyscallHandler handler) = 0;
  virtual Expected<void> on_process(ProcessHandler handler) = 0;
  virtual void log(std::string_view line) = 0;
  // Memory this VM shares with co-located VMs (gears-vmm --shm name=NAME, doc/shm.md): the
  // host's mapping, for the service's control plane. The guests write it concurrently: copy
  // what you read before you check it, and treat it as untrusted input. An error when this VM
  // has no such region.
  virtual Expected<std::span<std::uint8_t>> shared_region(std::string_view name) {
    return fail("no shared region " + std::string(name) + " in this gears-vmm");
  }
  // The VMs sharing region `name` with this one (vm_group.h): a VMM-only shared area and read
  // access to their guest RAM, for one-copy transfers. Lives as long as the VM.
  virtual Expected<VmGroup*> vm_group(std::string_view name) {
    return fail("no VM group for region " + std::string(name) + " in this gears-vmm");
  }
  // Guest RAM [gpa, gpa + len) as the host maps it, for a ring the guest half allocated and
  // announced by hypercall. Fails unless the whole range is RAM of one region. The mapping
  // lives as long as the VM; the guest writes it concurrently (untrusted, as above).
  virtual Expected<std::span<std::uint8_t>> guest_physical(std::uint64_t gpa, std::uint64_t len) {
    (void)gpa, (void)len;
    return fail("guest memory is not available to services in this gears-vmm");
  }
  // The VM's NIC `index` (gears-vmm --net, in order) on its overlay switch; valid until the
  // service is unloaded. An error when there is no such NIC.
  virtual Expected<OverlayNic*> overlay_nic(std::size_t index) {
    return fail("no NIC " + std::to_string(index) + " in this gears-vmm");
  }
  // Starts a thread that calls `poll` until the service is unloaded (gears-vmm stops and joins
  // it before the VMM half goes away); asleep, it wakes on Poller::wake() or after `idle`.
  virtual Expected<Poller*> start_poller(std::string_view name, PollFn poll, std::chrono::microseconds idle) {
    (void)poll, (void)idle;
    return fail("pollers are not available in this gears-vmm (" + std::string(name) + ")");
  }
  // Counters gears-vmm shows with the service; called from the control thread while the
  // service is loaded.
  virtual Expected<void> add_counters(CountersFn counters) {
    (void)counters;
    return fail("counters are not available in this gears-vmm");
  }
};

// The guest context of the hypercall being served on this thread (nullptr outside one).
// Lets a [[gears::vmm]] function read guest memory without a parameter for it.
inline thread_local GuestContext* current_guest_context = nullptr;
inline GuestContext* current_guest() { return current_guest_context; }

}  // namespace gears::vmm
