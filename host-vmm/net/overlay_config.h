// The overlay's configuration file (JSON) and the one call that turns it into a running
// switch with its UDP backend. Format (every key optional; doc/net.md has the details):
//
//   {
//     "listen":  "0.0.0.0:7878",          // this host's endpoint (port 0: any free port)
//     "network": 1,                       // overlay id carried in every header
//     "mtu": 1500,                        // guest MTU; frames up to mtu + 18 bytes
//     "ageing_s": 300,                    // learned MACs expire after this
//     "max_macs": 4096,                   // MAC table bound
//     "strict_peers": false,              // accept packets from listed peers/routes only
//     "peers":  ["10.0.0.2:7878"],        // flood (broadcast/unknown) destinations
//     "routes": [{"mac": "52:54:00:00:00:02", "peer": "10.0.0.2:7878"}],
//     "backend": "udp",                   // or "dpdk" (builds with GEARS_WITH_DPDK)
//     "dpdk": {"vdev": "net_af_packet0,iface=eth1", "eal": [],
//              "neighbors": {"10.0.0.2": "aa:bb:cc:dd:ee:ff"}, "gateway": "aa:bb:.."}
//   }
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "gears/expected.h"
#include "net/address.h"
#include "net/dpdk_backend.h"
#include "net/switch.h"

namespace gears::vmm::net {

struct OverlayConfig {
  Endpoint listen{0, GEARS_OVERLAY_DEFAULT_PORT};
  Switch::Options options;
  std::vector<Endpoint> peers;
  std::vector<std::pair<MacAddress, Endpoint>> routes;
  enum class BackendKind { kUdp, kDpdk } backend = BackendKind::kUdp;
  DpdkOptions dpdk;  // with kDpdk; dpdk.local is `listen`
};

Expected<OverlayConfig> parse_overlay_config(std::string_view json_text);
Expected<OverlayConfig> load_overlay_config(const std::string& path);

// Opens the backend on `listen`, creates the switch, adds peers and routes.
Expected<std::shared_ptr<Switch>> make_overlay(const OverlayConfig& cfg);

// One guest NIC as given on the command line:
// "--net mac=52:54:00:12:34:56,overlay=FILE,mtu=N,offload=on|off,tx=thread|vcpu".
// mac is required (guests on an overlay must not collide); without overlay the NIC is on a
// local-only switch shared by this gears-vmm's NICs; mtu (68..9000) is advertised to the guest
// (VIRTIO_NET_F_MTU) and defaults to the overlay's when that is not 1500. offload=off offers
// no checksum/segmentation offload and tx=vcpu transmits on the kicking vCPU (both for
// side-by-side measurements; the defaults are on and thread).
struct NicSpec {
  MacAddress mac;
  std::string overlay;  // configuration file; empty: local-only
  uint16_t mtu = 0;     // 0: not given
  bool offloads = true;
  bool tx_thread = true;
};
Expected<NicSpec> parse_nic_spec(std::string_view text);

}  // namespace gears::vmm::net
