// The overlay's DPDK backend (DPDK 22.11, built with -DGEARS_WITH_DPDK=ON): packet I/O on one
// DPDK port (typically a vdev: net_af_packet on a host NIC or veth, net_tap, net_af_xdp), with
// the outer Ethernet/IPv4/UDP headers and ARP done here (net/outer.h) since no kernel stack
// sits in between. The EAL starts once per process without hugepages or PCI
// (--no-huge --no-pci --no-shconf, a per-process file prefix); the calling thread's CPU
// affinity is restored afterwards so vCPU threads are not pinned by the EAL.
//
// Peers must be on the same L2 segment as the port (ARP resolves peer IPs directly; a
// `gateway` MAC can be given for everything else). Until a peer's MAC is known, one packet per
// peer waits for the ARP reply; others are dropped as unreachable. MTU: overlay frames up to
// 1518 bytes (mbufs of 2 KiB; the outer packet is 1572 bytes at most).
//
// This header needs no DPDK headers: the overlay configuration is parsed in every build, and
// open() fails with a clear message in builds without DPDK.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "net/backend.h"

namespace gears::vmm::net {

struct DpdkOptions {
  std::string vdev;                       // e.g. "net_af_packet0,iface=eth1"
  std::vector<std::string> eal_args;      // extra EAL arguments (first open() only)
  Endpoint local;                         // this host's overlay IP and UDP port (IP required)
  std::map<uint32_t, MacAddress> neighbors;  // static peer IP -> MAC (no ARP for these)
  std::optional<MacAddress> gateway;      // MAC for peers not answering ARP (off-link)
};

class DpdkBackend : public Backend {
 public:
  static Expected<std::shared_ptr<Backend>> open(const DpdkOptions& opts);
  static bool available();  // built with DPDK
};

}  // namespace gears::vmm::net
