// IPv4 addresses between our values (wire::Endpoint) and the socket API's sockaddr_in.
#pragma once
#include <arpa/inet.h>
#include <netinet/in.h>

#include "wire/address.hpp"

namespace us::sys {

inline sockaddr_in to_sockaddr(wire::Ipv4Addr ip, uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(ip.v);
  a.sin_port = htons(port);
  return a;
}

inline sockaddr_in to_sockaddr(const wire::Endpoint& e) {
  return to_sockaddr(e.ip, e.port);
}

inline wire::Endpoint from_sockaddr(const sockaddr_in& a) {
  return {wire::Ipv4Addr(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port)};
}

}  // namespace us::sys
