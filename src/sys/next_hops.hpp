// The link-layer address a packet to some IPv4 address leaves with, asked of the kernel over
// rtnetlink (the route, then its neighbour entry). Super-segments to the client go out through
// AF_PACKET (LanSender), which bypasses the kernel's IP output and so its neighbour lookup; the
// raw socket's sends (every small packet) keep that entry resolved and fresh.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>

#include "common/result.hpp"
#include "core/vocabulary.hpp"
#include "sys/fd.hpp"
#include "wire/address.hpp"

namespace us::sys {

class NextHops {
 public:
  // The socket is opened here (before the privilege drop; netlink sockets cannot be made after).
  static Result<NextHops, std::string> open(int ifindex);
  // The MAC of the next hop to `dst` when the route to it leaves through the LAN interface and
  // the kernel holds a usable neighbour entry for it; nullopt otherwise. An answer is kept for a
  // second, a miss for 100 ms.
  std::optional<wire::MacAddr> lookup(wire::Ipv4Addr dst, TimePoint now);
  uint64_t queries() const { return queries_; }

 private:
  struct Route {
    int oif = 0;
    std::optional<wire::Ipv4Addr> gateway;
  };
  std::optional<Route> route_to(wire::Ipv4Addr dst);
  std::optional<wire::MacAddr> neighbour(wire::Ipv4Addr ip);
  // Sends a request and returns the first reply of its sequence number (empty: an error reply).
  bool request(void* msg, uint32_t len, std::string& reply);

  struct Entry {
    std::optional<wire::MacAddr> mac;
    TimePoint until;
  };
  Fd fd_;
  int ifindex_ = 0;
  uint32_t seq_ = 0;
  uint64_t queries_ = 0;
  std::unordered_map<uint32_t, Entry> cache_;
};

}  // namespace us::sys
