// DpdkBackend: see dpdk_backend.h. Compiled only with -DGEARS_WITH_DPDK=ON.
#include "net/dpdk_backend.h"

#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_mbuf.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "net/outer.h"

namespace gears::vmm::net {

namespace {

constexpr uint16_t kBurst = 32;
constexpr uint16_t kRingSize = 512;
constexpr unsigned kPoolSize = 4095;
constexpr size_t kMaxNeighbors = 1024;
constexpr size_t kMaxWaiting = 64;  // peers with a packet waiting for ARP

std::mutex g_eal_mu;
bool g_eal_ready = false;
std::atomic<unsigned> g_instance{0};

// The EAL pins the calling thread to its main lcore; gears-vmm's threads (vCPUs among them)
// inherit affinity, so the caller's mask is put back afterwards.
Expected<void> init_eal(const std::vector<std::string>& extra) {
  std::lock_guard lk(g_eal_mu);
  if (g_eal_ready) return {};
  std::vector<std::string> args = {"gears-vmm", "--no-huge", "--no-pci", "-m", "256",
                                   "--no-shconf", "--no-telemetry", "-l", "0",
                                   "--file-prefix", "gears-" + std::to_string(getpid()),
                                   "--log-level", "*:warning"};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  cpu_set_t mask;
  const bool have_mask = sched_getaffinity(0, sizeof mask, &mask) == 0;
  const int r = rte_eal_init(static_cast<int>(args.size()), argv.data());
  if (have_mask) sched_setaffinity(0, sizeof mask, &mask);
  if (r < 0) return fail_errno("overlay: DPDK EAL initialisation failed", rte_errno);
  // --no-shconf leaves the per-process runtime directory empty; do not leave it behind.
  rmdir(rte_eal_get_runtime_dir());
  g_eal_ready = true;
  return {};
}

MacAddress to_mac(const rte_ether_addr& a) { return MacAddress::from(std::span(a.addr_bytes, 6)); }

class Dpdk final : public DpdkBackend, public std::enable_shared_from_this<Dpdk> {
 public:
  Dpdk(DpdkOptions opts, uint16_t port, rte_mempool* pool, MacAddress mac)
      : opts_(std::move(opts)), port_(port), pool_(pool), mac_(mac) {
    for (const auto& [ip, m] : opts_.neighbors) neighbors_[ip] = {m, true};
    uint16_t mtu = 0;
    if (rte_eth_dev_get_mtu(port_, &mtu) == 0) mtu_ = mtu;
  }
  ~Dpdk() override {
    stop();
    rte_eth_dev_stop(port_);
    rte_eth_dev_info info{};
    rte_device* dev = rte_eth_dev_info_get(port_, &info) == 0 ? info.device : nullptr;
    if (!dev || rte_dev_remove(dev) != 0) rte_eth_dev_close(port_);
    rte_mempool_free(pool_);
  }

  std::string_view name() const override { return "dpdk"; }
  Endpoint local() const override { return opts_.local; }

  Expected<void> start(Receive rx, PeerError on_error) override {
    std::lock_guard lk(run_mu_);
    if (thread_.joinable() || stop_) return fail("overlay: the DPDK backend can be started once");
    rx_ = std::move(rx);
    on_error_ = std::move(on_error);
    // The thread keeps the backend alive until its loop is over: if the last owner lets go
    // from inside a callback (on this thread, which cannot join itself), stop() detaches and
    // the backend is destroyed here once the loop has ended.
    thread_ = std::thread([self = shared_from_this()]() mutable {
      self->loop();
      self.reset();
    });
    return {};
  }

  void stop() override {
    std::lock_guard lk(run_mu_);
    stop_ = true;
    if (!thread_.joinable()) return;
    if (thread_.get_id() == std::this_thread::get_id()) {
      thread_.detach();  // see start()
      return;
    }
    thread_.join();
  }

  SendStatus send(const Endpoint& to, std::span<const uint8_t> packet) override {
    std::lock_guard lk(mu_);
    MacAddress dst;
    if (auto it = neighbors_.find(to.ip); it != neighbors_.end()) {
      dst = it->second.mac;
    } else if (opts_.gateway) {
      dst = *opts_.gateway;
    } else {
      // Hold one packet per peer until its ARP reply; ask at most once a second.
      if (waiting_.count(to.ip) || waiting_.size() >= kMaxWaiting) return SendStatus::kUnreachable;
      waiting_[to.ip] = {to, std::vector<uint8_t>(packet.begin(), packet.end())};
      const auto now = std::chrono::steady_clock::now();
      auto& last = asked_[to.ip];
      if (now - last >= std::chrono::seconds(1)) {
        last = now;
        ArpPacket req{kArpRequest, mac_, opts_.local.ip, MacAddress{}, to.ip};
        queue_arp_locked(req);
        flush_locked();
      }
      return SendStatus::kOk;
    }
    return queue_udp_locked(dst, to, packet);
  }

  void flush() override {
    std::lock_guard lk(mu_);
    flush_locked();
  }

 private:
  struct Neighbor {
    MacAddress mac;
    bool is_static = false;
  };
  struct Waiting {
    Endpoint to;
    std::vector<uint8_t> packet;
  };

  rte_mbuf* alloc(size_t len, uint8_t** data) {
    rte_mbuf* m = rte_pktmbuf_alloc(pool_);
    if (!m) return nullptr;
    char* p = rte_pktmbuf_append(m, static_cast<uint16_t>(len));
    if (!p) {
      rte_pktmbuf_free(m);
      return nullptr;
    }
    *data = reinterpret_cast<uint8_t*>(p);
    return m;
  }

  SendStatus queue_udp_locked(const MacAddress& dst, const Endpoint& to, std::span<const uint8_t> packet) {
    const size_t len = kOuterHeaders + packet.size();
    if (len > RTE_MBUF_DEFAULT_DATAROOM) return SendStatus::kError;
    // Unlike the kernel's UDP socket, nothing here fragments: an outer packet above the link
    // MTU would be dropped silently by the device (af_packet refuses it). Refuse it here, where
    // the switch counts it, and say once how to size the guest NIC.
    if (mtu_ && len - 14 > mtu_) {
      if (!mtu_warned_.exchange(true))
        std::fprintf(stderr, "gears-vmm: overlay (dpdk): a %zu-byte overlay packet exceeds the link MTU %u by %zu bytes "
                     "once encapsulated: lower the guest NIC mtu by at least that much (1446 fits a 1500-byte "
                     "link); the DPDK backend does not fragment\n",
                     packet.size(), static_cast<unsigned>(mtu_), len - 14 - mtu_);
      return SendStatus::kError;
    }
    uint8_t* data = nullptr;
    rte_mbuf* m = alloc(len, &data);
    if (!m) return SendStatus::kNoBuffer;
    build_udp_frame({mac_, dst, opts_.local, to}, ip_id_++, packet, std::span(data, len));
    tx_.push_back(m);
    if (tx_.size() >= kBurst) flush_locked();
    return SendStatus::kOk;
  }

  void queue_arp_locked(const ArpPacket& arp) {
    uint8_t* data = nullptr;
    // Ethernet's minimum frame is 60 bytes (plus FCS): pad the 42-byte ARP frame.
    rte_mbuf* m = alloc(60, &data);
    if (!m) return;
    std::memset(data, 0, 60);
    build_arp_frame(arp, std::span(data, 60));
    tx_.push_back(m);
  }

  void flush_locked() {
    uint16_t done = 0;
    while (done < tx_.size()) {
      const uint16_t n = rte_eth_tx_burst(port_, 0, tx_.data() + done, static_cast<uint16_t>(tx_.size() - done));
      if (n == 0) break;
      done = static_cast<uint16_t>(done + n);
    }
    for (size_t i = done; i < tx_.size(); ++i) rte_pktmbuf_free(tx_[i]);  // the ring is full: dropped
    tx_.clear();
  }

  void on_arp(const ArpPacket& arp) {
    std::vector<Waiting> ready;
    {
      std::lock_guard lk(mu_);
      // Learn the sender when the packet concerns us (or refreshes what we know).
      if (arp.sip != 0 && !arp.sha.is_multicast() &&
          (arp.tip == opts_.local.ip || neighbors_.count(arp.sip))) {
        auto it = neighbors_.find(arp.sip);
        if (it == neighbors_.end() && neighbors_.size() < kMaxNeighbors)
          neighbors_[arp.sip] = {arp.sha, false};
        else if (it != neighbors_.end() && !it->second.is_static)
          it->second.mac = arp.sha;
        if (auto w = waiting_.find(arp.sip); w != waiting_.end()) {
          ready.push_back(std::move(w->second));
          waiting_.erase(w);
        }
      }
      if (arp.op == kArpRequest && arp.tip == opts_.local.ip)
        queue_arp_locked({kArpReply, mac_, opts_.local.ip, arp.sha, arp.sip});
      for (auto& w : ready) queue_udp_locked(arp.sha, w.to, w.packet);
      flush_locked();
    }
  }

  void loop() {
    rte_mbuf* bufs[kBurst];
    unsigned idle = 0;
    while (!stop_) {
      const uint16_t n = rte_eth_rx_burst(port_, 0, bufs, kBurst);
      if (n == 0) {
        // Poll hard while traffic flows, then back off: gears-vmm shares its cores with vCPUs.
        if (++idle > 256) std::this_thread::sleep_for(std::chrono::microseconds(100));
        continue;
      }
      idle = 0;
      for (uint16_t i = 0; i < n; ++i) {
        rte_mbuf* m = bufs[i];
        if (m->nb_segs == 1 && !stop_) {
          const std::span<const uint8_t> f(rte_pktmbuf_mtod(m, const uint8_t*), rte_pktmbuf_data_len(m));
          const OuterFrame o = parse_outer_frame(f, opts_.local);
          if (o.kind == OuterKind::kOverlay) rx_(o.from, o.payload);
          else if (o.kind == OuterKind::kArp) on_arp(o.arp);
        }
        rte_pktmbuf_free(m);
      }
    }
  }

  const DpdkOptions opts_;
  const uint16_t port_;
  rte_mempool* const pool_;
  const MacAddress mac_;
  uint16_t mtu_ = 0;  // the port's MTU (0: unknown, no check)
  std::atomic<bool> mtu_warned_{false};

  std::mutex mu_;  // neighbours, waiting packets, the TX queue
  std::map<uint32_t, Neighbor> neighbors_;
  std::map<uint32_t, Waiting> waiting_;
  std::map<uint32_t, std::chrono::steady_clock::time_point> asked_;
  std::vector<rte_mbuf*> tx_;
  uint16_t ip_id_ = 0;

  std::mutex run_mu_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  Receive rx_;
  PeerError on_error_;
};

}  // namespace

bool DpdkBackend::available() { return true; }

Expected<std::shared_ptr<Backend>> DpdkBackend::open(const DpdkOptions& opts) {
  if (opts.vdev.empty()) return fail("overlay: the DPDK backend needs a \"vdev\" (e.g. net_af_packet0,iface=eth1)");
  if (opts.local.ip == 0 || opts.local.port == 0)
    return fail("overlay: the DPDK backend needs \"listen\" with this host's IP and port");
  GEARS_TRY(init_eal(opts.eal_args));
  const std::string name = opts.vdev.substr(0, opts.vdev.find(','));
  if (rte_dev_probe(opts.vdev.c_str()) != 0) return fail("overlay: DPDK could not create device " + opts.vdev);
  uint16_t port = 0;
  if (rte_eth_dev_get_port_by_name(name.c_str(), &port) != 0)
    return fail("overlay: DPDK device " + name + " has no ethdev port");
  const std::string pool_name = "gears_ovl" + std::to_string(g_instance++);
  rte_mempool* pool = rte_pktmbuf_pool_create(pool_name.c_str(), kPoolSize, 256, 0,
                                              RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  auto undo = [&](const std::string& what) {
    rte_eth_dev_close(port);
    if (pool) rte_mempool_free(pool);
    return fail("overlay: DPDK " + what + " failed for " + name);
  };
  if (!pool) return undo("mbuf pool creation");
  rte_eth_conf conf{};
  if (rte_eth_dev_configure(port, 1, 1, &conf) != 0) return undo("port configuration");
  const int socket = rte_eth_dev_socket_id(port);
  const unsigned sock = socket < 0 ? 0u : static_cast<unsigned>(socket);
  if (rte_eth_rx_queue_setup(port, 0, kRingSize, sock, nullptr, pool) != 0) return undo("RX queue setup");
  if (rte_eth_tx_queue_setup(port, 0, kRingSize, sock, nullptr) != 0) return undo("TX queue setup");
  if (rte_eth_dev_start(port) != 0) return undo("port start");
  rte_eth_promiscuous_enable(port);
  rte_ether_addr addr{};
  rte_eth_macaddr_get(port, &addr);
  return std::shared_ptr<Backend>(std::make_shared<Dpdk>(opts, port, pool, to_mac(addr)));
}

}  // namespace gears::vmm::net
