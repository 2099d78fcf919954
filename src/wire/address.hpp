// Addresses as values in host byte order; conversion to and from wire order happens in the views.
#pragma once
#include <array>
#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace us::wire {

struct Ipv4Addr {
  uint32_t v = 0;  // host byte order: 198.18.0.1 == 0xC6120001

  constexpr Ipv4Addr() = default;
  constexpr explicit Ipv4Addr(uint32_t host_order) : v(host_order) {}
  constexpr Ipv4Addr(uint8_t a, uint8_t b, uint8_t c, uint8_t d)
      : v((uint32_t{a} << 24) | (uint32_t{b} << 16) | (uint32_t{c} << 8) | d) {}
  friend constexpr auto operator<=>(const Ipv4Addr&, const Ipv4Addr&) = default;

  // Dotted quad only ("198.18.0.1"); no shorthand forms.
  static std::optional<Ipv4Addr> parse(std::string_view text);
  std::string to_string() const;
};

struct Endpoint {
  Ipv4Addr ip;
  uint16_t port = 0;
  friend constexpr auto operator<=>(const Endpoint&, const Endpoint&) = default;

  // "198.18.0.1:80"
  static std::optional<Endpoint> parse(std::string_view text);
  std::string to_string() const;
};

struct MacAddr {
  std::array<uint8_t, 6> b{};
  friend constexpr auto operator<=>(const MacAddr&, const MacAddr&) = default;
  static constexpr MacAddr broadcast() { return MacAddr{{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}; }
  std::string to_string() const;
};

}  // namespace us::wire
