#include "wire/address.hpp"

#include <charconv>
#include <cstdio>

namespace us::wire {

std::optional<Ipv4Addr> Ipv4Addr::parse(std::string_view text) {
  uint32_t v = 0;
  const char* p = text.data();
  const char* end = text.data() + text.size();
  for (int i = 0; i < 4; ++i) {
    if (i > 0) {
      if (p == end || *p != '.') return std::nullopt;
      ++p;
    }
    if (p == end || *p < '0' || *p > '9') return std::nullopt;
    unsigned octet = 0;
    auto [next, ec] = std::from_chars(p, end, octet);
    if (ec != std::errc{} || octet > 255 || next - p > 3) return std::nullopt;
    p = next;
    v = (v << 8) | octet;
  }
  if (p != end) return std::nullopt;
  return Ipv4Addr(v);
}

std::string Ipv4Addr::to_string() const {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u", (v >> 24) & 0xff, (v >> 16) & 0xff, (v >> 8) & 0xff,
                v & 0xff);
  return buf;
}

std::optional<Endpoint> Endpoint::parse(std::string_view text) {
  auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return std::nullopt;
  auto ip = Ipv4Addr::parse(text.substr(0, colon));
  if (!ip) return std::nullopt;
  auto port_text = text.substr(colon + 1);
  unsigned port = 0;
  auto [next, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || next != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return std::nullopt;
  return Endpoint{*ip, static_cast<uint16_t>(port)};
}

std::string Endpoint::to_string() const {
  return ip.to_string() + ":" + std::to_string(port);
}

std::string MacAddr::to_string() const {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return buf;
}

}  // namespace us::wire
