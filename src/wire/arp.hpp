// Ethernet II framing and ARP for Ethernet + IPv4 (RFC 826). ARP is how a node takes over the
// advertised address: a gratuitous announcement (RFC 5227 §3) moves it to our MAC.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "wire/address.hpp"
#include "wire/ipv4.hpp"

namespace us::wire {

constexpr uint16_t kEtherTypeIpv4 = 0x0800, kEtherTypeArp = 0x0806;
inline constexpr size_t kEthernetHeaderLen = 14;
inline constexpr size_t kArpLen = 28;

namespace arp_op {
constexpr uint16_t Request = 1, Reply = 2;
}  // namespace arp_op

// The Ethernet II header in front of an IP or ARP payload (no 802.1Q tags).
struct EthernetFrame {
  MacAddr dst;
  MacAddr src;
  uint16_t ethertype = 0;
  std::span<uint8_t> payload;  // everything after the 14-byte header, padding included
};
// Errors: TooShort (< 14 bytes).
Result<EthernetFrame, ParseError> parse_ethernet(std::span<uint8_t> frame);

struct ArpRepr {
  uint16_t op = 0;  // 1 request, 2 reply
  MacAddr sender_mac;
  Ipv4Addr sender_ip;
  MacAddr target_mac;
  Ipv4Addr target_ip;
  friend constexpr bool operator==(const ArpRepr&, const ArpRepr&) = default;
};

// arp_payload = the bytes after the Ethernet header (trailing padding allowed).
// Errors: TooShort (< 28 bytes), BadVersion (htype != 1 or ptype != 0x0800),
// BadHeaderLength (hlen != 6 or plen != 4), BadOption (op not request or reply).
Result<ArpRepr, ParseError> parse_arp(std::span<const uint8_t> arp_payload);

// Full Ethernet frame: 14-byte header + 28 bytes of ARP, unpadded (the NIC pads to 60).
std::vector<uint8_t> build_arp_frame(MacAddr eth_dst, MacAddr eth_src, const ArpRepr& arp);

// Request with sender = target = ip and a zero target MAC: an RFC 5227 §2.3 announcement. Send it
// to the broadcast MAC so every neighbour updates its cache.
ArpRepr gratuitous_arp(MacAddr mac, Ipv4Addr ip);

}  // namespace us::wire
