// Addresses the overlay deals in: Ethernet MAC addresses (the switch's keys) and UDP/IPv4
// endpoints (where a remote host's overlay listens). Plain values, parsed from and printed to
// the text forms used in configuration files and gearsctl.
#pragma once

#include <netinet/in.h>

#include <array>
#include <compare>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "gears/expected.h"

namespace gears::vmm::net {

struct MacAddress {
  std::array<uint8_t, 6> bytes{};

  static MacAddress broadcast() { return {{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  // The destination (bytes 0..5) or source (6..11) of a frame of at least 12 bytes.
  static MacAddress from(std::span<const uint8_t> six);

  // Group bit: broadcast and multicast frames go to every port.
  bool is_multicast() const { return (bytes[0] & 1) != 0; }
  bool is_zero() const { return bytes == std::array<uint8_t, 6>{}; }
  uint64_t key() const;

  auto operator<=>(const MacAddress&) const = default;
};

// "52:54:00:12:34:56" (hex digits, ':' or '-' separated).
Expected<MacAddress> parse_mac(std::string_view text);
std::string to_string(const MacAddress& mac);

// An IPv4 UDP endpoint, stored in host byte order.
struct Endpoint {
  uint32_t ip = 0;
  uint16_t port = 0;

  sockaddr_in sockaddr() const;
  static Endpoint from(const sockaddr_in& sa);
  auto operator<=>(const Endpoint&) const = default;
};

// "10.0.0.2:7878"; "10.0.0.2" alone takes `default_port` (0 = the port is required).
Expected<Endpoint> parse_endpoint(std::string_view text, uint16_t default_port = 0);
std::string to_string(const Endpoint& ep);

}  // namespace gears::vmm::net

template <>
struct std::hash<gears::vmm::net::MacAddress> {
  size_t operator()(const gears::vmm::net::MacAddress& m) const noexcept {
    return std::hash<uint64_t>{}(m.key());
  }
};
