// The front node answers ARP for the advertised address, and announces it on becoming the front
// (the paper's takeover: the address moves to the survivor's MAC). No I/O: the node's LAN tap
// feeds frames in and sends what comes out. Read wire/arp.hpp first.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "wire/address.hpp"

namespace us::node {

class ArpResponder {
 public:
  ArpResponder(wire::Ipv4Addr advertised, wire::MacAddr mac) : advertised_(advertised), mac_(mac) {}

  // The reply to send for a received Ethernet frame carrying ARP, or nothing: only a request for
  // the advertised address, only while this node is the front (the other node answers
  // otherwise), and never to someone else's announcement of it (sender ip == target ip).
  std::optional<std::vector<uint8_t>> reply_to(std::span<const uint8_t> frame, bool front) const;

  // A gratuitous ARP (RFC 5227 announcement of the advertised address at our MAC), broadcast.
  std::vector<uint8_t> announcement() const;

 private:
  wire::Ipv4Addr advertised_;
  wire::MacAddr mac_;
};

}  // namespace us::node
