#include "node/arp_responder.hpp"

#include "wire/arp.hpp"

namespace us::node {

std::optional<std::vector<uint8_t>> ArpResponder::reply_to(std::span<const uint8_t> frame,
                                                           bool front) const {
  if (frame.size() < wire::kEthernetHeaderLen) return std::nullopt;
  auto arp = wire::parse_arp(frame.subspan(wire::kEthernetHeaderLen));
  if (!arp || arp->op != wire::arp_op::Request) return std::nullopt;
  if (arp->target_ip != advertised_ || !front) return std::nullopt;
  if (arp->sender_ip == arp->target_ip) return std::nullopt;  // someone else's announcement
  wire::ArpRepr reply{wire::arp_op::Reply, mac_, advertised_, arp->sender_mac, arp->sender_ip};
  return wire::build_arp_frame(arp->sender_mac, mac_, reply);
}

std::vector<uint8_t> ArpResponder::announcement() const {
  return wire::build_arp_frame(wire::MacAddr::broadcast(), mac_,
                               wire::gratuitous_arp(mac_, advertised_));
}

}  // namespace us::node
