#include "net/overlay_config.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "net/udp_backend.h"

namespace gears::vmm::net {

namespace {

using Json = nlohmann::json;

Expected<uint64_t> get_uint(const Json& j, const char* key, uint64_t def, uint64_t max) {
  if (!j.contains(key)) return def;
  const Json& v = j[key];
  if (!v.is_number_unsigned()) return fail(std::string("overlay config: \"") + key + "\" must be a non-negative integer");
  const uint64_t x = v.get<uint64_t>();
  if (x > max) return fail(std::string("overlay config: \"") + key + "\" is larger than " + std::to_string(max));
  return x;
}

Expected<std::string> get_string(const Json& j, const char* key, const char* what) {
  if (!j.contains(key) || !j[key].is_string())
    return fail(std::string("overlay config: ") + what + " needs a string \"" + key + "\"");
  return j[key].get<std::string>();
}

Expected<void> parse_dpdk(const Json& d, DpdkOptions& o) {
  if (!d.is_object()) return fail("overlay config: \"dpdk\" must be an object");
  for (const auto& [k, v] : d.items())
    if (k != "vdev" && k != "eal" && k != "neighbors" && k != "gateway")
      return fail("overlay config: unknown key \"dpdk." + k + "\"");
  if (d.contains("vdev")) {
    if (!d["vdev"].is_string()) return fail("overlay config: \"dpdk.vdev\" must be a string");
    o.vdev = d["vdev"].get<std::string>();
  }
  if (d.contains("eal")) {
    if (!d["eal"].is_array()) return fail("overlay config: \"dpdk.eal\" must be an array of strings");
    for (const Json& a : d["eal"]) {
      if (!a.is_string()) return fail("overlay config: \"dpdk.eal\" must be an array of strings");
      o.eal_args.push_back(a.get<std::string>());
    }
  }
  if (d.contains("neighbors")) {
    if (!d["neighbors"].is_object()) return fail("overlay config: \"dpdk.neighbors\" must map IPs to MACs");
    for (const auto& [ip, m] : d["neighbors"].items()) {
      auto ep = parse_endpoint(ip, 1);
      if (!ep) return fail("overlay config: dpdk.neighbors: " + ep.error().message);
      if (!m.is_string()) return fail("overlay config: dpdk.neighbors: the MAC of " + ip + " must be a string");
      auto mac = parse_mac(m.get<std::string>());
      if (!mac) return fail("overlay config: dpdk.neighbors: " + mac.error().message);
      o.neighbors[ep->ip] = *mac;
    }
  }
  if (d.contains("gateway")) {
    if (!d["gateway"].is_string()) return fail("overlay config: \"dpdk.gateway\" must be a MAC address");
    auto mac = parse_mac(d["gateway"].get<std::string>());
    if (!mac) return fail("overlay config: dpdk.gateway: " + mac.error().message);
    o.gateway = *mac;
  }
  return {};
}

}  // namespace

Expected<OverlayConfig> parse_overlay_config(std::string_view json_text) {
  Json j = Json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return fail("overlay config: not valid JSON");
  if (!j.is_object()) return fail("overlay config: the top level must be an object");
  static const char* const kKeys[] = {"listen", "network", "mtu", "ageing_s", "max_macs",
                                      "strict_peers", "peers", "routes", "backend", "dpdk"};
  for (const auto& [k, v] : j.items()) {
    bool known = false;
    for (const char* key : kKeys) known |= k == key;
    if (!known) return fail("overlay config: unknown key \"" + k + "\"");
  }
  OverlayConfig c;
  if (j.contains("listen")) {
    if (!j["listen"].is_string()) return fail("overlay config: \"listen\" must be a string (ip:port)");
    auto ep = parse_endpoint(j["listen"].get<std::string>(), GEARS_OVERLAY_DEFAULT_PORT);
    if (!ep) return fail("overlay config: " + ep.error().message);
    c.listen = *ep;
  }
  auto network = get_uint(j, "network", 1, 0xffff'ffffULL);
  auto mtu = get_uint(j, "mtu", GEARS_OVERLAY_DEFAULT_MTU, GEARS_OVERLAY_MAX_MTU);
  auto ageing = get_uint(j, "ageing_s", 300, 365ULL * 24 * 3600);
  auto max_macs = get_uint(j, "max_macs", 4096, 1u << 20);
  for (auto* r : {&network, &mtu, &ageing, &max_macs})
    if (!*r) return fail(r->error());
  c.options.network = static_cast<uint32_t>(*network);
  c.options.mtu = static_cast<uint32_t>(*mtu);
  c.options.ageing = std::chrono::seconds(*ageing);
  c.options.max_entries = *max_macs;
  if (j.contains("strict_peers")) {
    if (!j["strict_peers"].is_boolean()) return fail("overlay config: \"strict_peers\" must be true or false");
    c.options.strict_peers = j["strict_peers"].get<bool>();
  }
  if (j.contains("peers")) {
    if (!j["peers"].is_array()) return fail("overlay config: \"peers\" must be an array of \"ip:port\"");
    for (const Json& p : j["peers"]) {
      if (!p.is_string()) return fail("overlay config: \"peers\" must be an array of \"ip:port\"");
      auto ep = parse_endpoint(p.get<std::string>(), GEARS_OVERLAY_DEFAULT_PORT);
      if (!ep) return fail("overlay config: " + ep.error().message);
      c.peers.push_back(*ep);
    }
  }
  if (j.contains("routes")) {
    if (!j["routes"].is_array()) return fail("overlay config: \"routes\" must be an array");
    for (const Json& r : j["routes"]) {
      if (!r.is_object()) return fail("overlay config: each route must be {\"mac\":..,\"peer\":..}");
      auto mac_s = get_string(r, "mac", "a route");
      if (!mac_s) return fail(mac_s.error());
      auto peer_s = get_string(r, "peer", "a route");
      if (!peer_s) return fail(peer_s.error());
      auto mac = parse_mac(*mac_s);
      if (!mac) return fail("overlay config: " + mac.error().message);
      auto ep = parse_endpoint(*peer_s, GEARS_OVERLAY_DEFAULT_PORT);
      if (!ep) return fail("overlay config: " + ep.error().message);
      c.routes.emplace_back(*mac, *ep);
    }
  }
  if (j.contains("backend")) {
    const Json& b = j["backend"];
    if (b == "udp") c.backend = OverlayConfig::BackendKind::kUdp;
    else if (b == "dpdk") c.backend = OverlayConfig::BackendKind::kDpdk;
    else return fail("overlay config: \"backend\" must be \"udp\" or \"dpdk\"");
  }
  if (j.contains("dpdk")) GEARS_TRY(parse_dpdk(j["dpdk"], c.dpdk));
  if (c.backend == OverlayConfig::BackendKind::kDpdk && c.dpdk.vdev.empty())
    return fail("overlay config: the dpdk backend needs \"dpdk\": {\"vdev\": ...}");
  c.dpdk.local = c.listen;
  return c;
}

Expected<OverlayConfig> load_overlay_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail_errno("overlay config " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  auto c = parse_overlay_config(ss.str());
  if (!c) return fail(c.error().message + " (" + path + ")");
  return c;
}

Expected<std::shared_ptr<Switch>> make_overlay(const OverlayConfig& cfg) {
  std::shared_ptr<Backend> backend;
  if (cfg.backend == OverlayConfig::BackendKind::kDpdk) {
    auto b = DpdkBackend::open(cfg.dpdk);
    if (!b) return fail(b.error());
    backend = std::move(*b);
  } else {
    auto b = UdpBackend::open(cfg.listen);
    if (!b) return fail(b.error());
    backend = std::move(*b);
  }
  auto sw = Switch::create(cfg.options, std::move(backend));
  if (!sw) return fail(sw.error());
  for (const auto& p : cfg.peers) (*sw)->add_peer(p);
  for (const auto& [mac, peer] : cfg.routes) GEARS_TRY((*sw)->add_route(mac, peer));
  return sw;
}

Expected<NicSpec> parse_nic_spec(std::string_view text) {
  NicSpec n;
  bool have_mac = false;
  size_t pos = 0;
  while (pos <= text.size()) {
    const size_t end = std::min(text.find(',', pos), text.size());
    const std::string_view item = text.substr(pos, end - pos);
    pos = end + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    const std::string key(item.substr(0, eq));
    const std::string value(eq == std::string_view::npos ? "" : item.substr(eq + 1));
    if (eq == std::string_view::npos || value.empty())
      return fail("--net: '" + std::string(item) + "' is not key=value");
    if (key == "mac") {
      auto m = parse_mac(value);
      if (!m) return fail("--net: " + m.error().message);
      if (!m->is_multicast() && !m->is_zero()) {
        n.mac = *m;
        have_mac = true;
      } else {
        return fail("--net: mac " + value + " is not a station address");
      }
    } else if (key == "overlay") {
      n.overlay = value;
    } else if (key == "mtu") {
      if (value.size() > 5 || value.find_first_not_of("0123456789") != std::string::npos)
        return fail("--net: mtu '" + value + "' is not a number");
      const unsigned long v = std::stoul(value);
      if (v < 68 || v > GEARS_OVERLAY_MAX_MTU) return fail("--net: mtu " + value + " is outside 68..9000");
      n.mtu = static_cast<uint16_t>(v);
    } else if (key == "offload") {
      if (value != "on" && value != "off") return fail("--net: offload '" + value + "' is not on or off");
      n.offloads = value == "on";
    } else if (key == "tx") {
      if (value != "thread" && value != "vcpu") return fail("--net: tx '" + value + "' is not thread or vcpu");
      n.tx_thread = value == "thread";
    } else {
      return fail("--net: unknown key '" + key + "' (mac, overlay, mtu, offload, tx)");
    }
  }
  if (!have_mac) return fail("--net: mac=xx:xx:xx:xx:xx:xx is required");
  return n;
}

}  // namespace gears::vmm::net
