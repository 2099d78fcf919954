#include "wire/arp.hpp"

#include <algorithm>

#include "wire/bytes.hpp"

namespace us::wire {

namespace {

constexpr uint16_t kHtypeEthernet = 1;

MacAddr load_mac(std::span<const uint8_t> b, size_t off) {
  MacAddr m;
  std::copy_n(b.begin() + static_cast<std::ptrdiff_t>(off), m.b.size(), m.b.begin());
  return m;
}

void store_mac(std::span<uint8_t> b, size_t off, MacAddr m) {
  std::copy(m.b.begin(), m.b.end(), b.begin() + static_cast<std::ptrdiff_t>(off));
}

}  // namespace

Result<EthernetFrame, ParseError> parse_ethernet(std::span<uint8_t> frame) {
  if (frame.size() < kEthernetHeaderLen) return Err{ParseError::TooShort};
  return EthernetFrame{load_mac(frame, 0), load_mac(frame, 6), load_be16(frame, 12),
                       frame.subspan(kEthernetHeaderLen)};
}

// RFC 826 packet layout for Ethernet/IPv4: htype(2) ptype(2) hlen(1) plen(1) op(2) sha(6) spa(4)
// tha(6) tpa(4).
Result<ArpRepr, ParseError> parse_arp(std::span<const uint8_t> p) {
  if (p.size() < kArpLen) return Err{ParseError::TooShort};
  if (load_be16(p, 0) != kHtypeEthernet || load_be16(p, 2) != kEtherTypeIpv4)
    return Err{ParseError::BadVersion};
  if (p[4] != 6 || p[5] != 4) return Err{ParseError::BadHeaderLength};
  uint16_t op = load_be16(p, 6);
  if (op != arp_op::Request && op != arp_op::Reply) return Err{ParseError::BadOption};
  return ArpRepr{op, load_mac(p, 8), Ipv4Addr(load_be32(p, 14)), load_mac(p, 18),
                 Ipv4Addr(load_be32(p, 24))};
}

std::vector<uint8_t> build_arp_frame(MacAddr eth_dst, MacAddr eth_src, const ArpRepr& arp) {
  std::vector<uint8_t> f(kEthernetHeaderLen + kArpLen, 0);
  std::span<uint8_t> b(f);
  store_mac(b, 0, eth_dst);
  store_mac(b, 6, eth_src);
  store_be16(b, 12, kEtherTypeArp);
  std::span<uint8_t> p = b.subspan(kEthernetHeaderLen);
  store_be16(p, 0, kHtypeEthernet);
  store_be16(p, 2, kEtherTypeIpv4);
  p[4] = 6;
  p[5] = 4;
  store_be16(p, 6, arp.op);
  store_mac(p, 8, arp.sender_mac);
  store_be32(p, 14, arp.sender_ip.v);
  store_mac(p, 18, arp.target_mac);
  store_be32(p, 24, arp.target_ip.v);
  return f;
}

ArpRepr gratuitous_arp(MacAddr mac, Ipv4Addr ip) {
  return ArpRepr{arp_op::Request, mac, ip, MacAddr{}, ip};
}

}  // namespace us::wire
