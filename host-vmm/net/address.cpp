#include "net/address.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace gears::vmm::net {

MacAddress MacAddress::from(std::span<const uint8_t> six) {
  MacAddress m;
  std::memcpy(m.bytes.data(), six.data(), std::min<size_t>(six.size(), 6));
  return m;
}

uint64_t MacAddress::key() const {
  uint64_t k = 0;
  for (uint8_t b : bytes) k = (k << 8) | b;
  return k;
}

namespace {
int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Expected<MacAddress> parse_mac(std::string_view text) {
  // Exactly six two-digit groups with one separator style: "52:54:00:12:34:56".
  MacAddress m;
  if (text.size() != 17) return fail("MAC address '" + std::string(text) + "' is not of the form xx:xx:xx:xx:xx:xx");
  const char sep = text[2];
  if (sep != ':' && sep != '-') return fail("MAC address '" + std::string(text) + "' is not of the form xx:xx:xx:xx:xx:xx");
  for (size_t i = 0; i < 6; ++i) {
    const int hi = hex_digit(text[3 * i]), lo = hex_digit(text[3 * i + 1]);
    if (hi < 0 || lo < 0 || (i < 5 && text[3 * i + 2] != sep))
      return fail("MAC address '" + std::string(text) + "' is not of the form xx:xx:xx:xx:xx:xx");
    m.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return m;
}

std::string to_string(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac.bytes[0], mac.bytes[1],
                mac.bytes[2], mac.bytes[3], mac.bytes[4], mac.bytes[5]);
  return buf;
}

sockaddr_in Endpoint::sockaddr() const {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(ip);
  sa.sin_port = htons(port);
  return sa;
}

Endpoint Endpoint::from(const sockaddr_in& sa) {
  return {ntohl(sa.sin_addr.s_addr), ntohs(sa.sin_port)};
}

Expected<Endpoint> parse_endpoint(std::string_view text, uint16_t default_port) {
  const std::string s(text);
  const size_t colon = s.rfind(':');
  const std::string host = colon == std::string::npos ? s : s.substr(0, colon);
  Endpoint ep;
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1)
    return fail("endpoint '" + s + "': '" + host + "' is not an IPv4 address");
  ep.ip = ntohl(a.s_addr);
  if (colon == std::string::npos) {
    if (default_port == 0) return fail("endpoint '" + s + "' has no port (ip:port)");
    ep.port = default_port;
    return ep;
  }
  const std::string p = s.substr(colon + 1);
  if (p.empty() || p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos)
    return fail("endpoint '" + s + "': port '" + p + "' is not a number");
  const unsigned long v = std::stoul(p);
  if (v > 65535) return fail("endpoint '" + s + "': port " + p + " is out of range");
  ep.port = static_cast<uint16_t>(v);
  return ep;
}

std::string to_string(const Endpoint& ep) {
  in_addr a{htonl(ep.ip)};
  char buf[INET_ADDRSTRLEN] = {};
  inet_ntop(AF_INET, &a, buf, sizeof buf);
  return std::string(buf) + ":" + std::to_string(ep.port);
}

}  // namespace gears::vmm::net
