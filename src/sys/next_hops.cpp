#include "sys/next_hops.hpp"

#include <arpa/inet.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>

namespace us::sys {

namespace {

using namespace std::chrono_literals;

constexpr auto kKeepAnswer = 1s;
constexpr auto kKeepMiss = 100ms;

// A request: header, body, one IPv4 address attribute.
template <class Body>
struct Request {
  nlmsghdr nh;
  Body body;
  rtattr attr;
  uint32_t addr;
};

void put_addr(rtattr& a, uint32_t& value, unsigned short type, wire::Ipv4Addr ip) {
  a.rta_type = type;
  a.rta_len = RTA_LENGTH(sizeof(uint32_t));
  value = htonl(ip.v);
}

}  // namespace

Result<NextHops, std::string> NextHops::open(int ifindex) {
  NextHops n;
  n.ifindex_ = ifindex;
  n.fd_.reset(::socket(AF_NETLINK, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, NETLINK_ROUTE));
  if (!n.fd_) return Err{errno_text("netlink socket")};
  sockaddr_nl local{};
  local.nl_family = AF_NETLINK;
  if (::bind(n.fd_.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) != 0)
    return Err{errno_text("bind netlink")};
  return n;
}

bool NextHops::request(void* msg, uint32_t len, std::string& reply) {
  auto* nh = static_cast<nlmsghdr*>(msg);
  nh->nlmsg_seq = ++seq_;
  ++queries_;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(fd_.get(), msg, len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) !=
      static_cast<ssize_t>(len))
    return false;
  // rtnetlink answers a get within the sendto: the reply is queued already. Older replies (of a
  // request whose reply was never read) are skipped by their sequence number.
  alignas(nlmsghdr) char buf[8192];
  for (int tries = 0; tries < 8; ++tries) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof buf, 0);
    if (n <= 0) return false;
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf); NLMSG_OK(h, static_cast<unsigned>(n));
         h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq_) continue;
      if (h->nlmsg_type == NLMSG_ERROR) return false;
      reply.assign(reinterpret_cast<char*>(h), h->nlmsg_len);
      return true;
    }
  }
  return false;
}

std::optional<NextHops::Route> NextHops::route_to(wire::Ipv4Addr dst) {
  Request<rtmsg> r{};
  r.nh.nlmsg_len = sizeof r;
  r.nh.nlmsg_type = RTM_GETROUTE;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  r.body.rtm_family = AF_INET;
  r.body.rtm_dst_len = 32;
  put_addr(r.attr, r.addr, RTA_DST, dst);
  std::string reply;
  if (!request(&r, sizeof r, reply)) return std::nullopt;
  auto* h = reinterpret_cast<nlmsghdr*>(reply.data());
  if (h->nlmsg_type != RTM_NEWROUTE) return std::nullopt;
  auto* rt = static_cast<rtmsg*>(NLMSG_DATA(h));
  Route route;
  int len = static_cast<int>(RTM_PAYLOAD(h));
  for (auto* a = RTM_RTA(rt); RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == RTA_OIF && RTA_PAYLOAD(a) >= 4) {
      std::memcpy(&route.oif, RTA_DATA(a), 4);
    } else if (a->rta_type == RTA_GATEWAY && RTA_PAYLOAD(a) == 4) {
      uint32_t gw;
      std::memcpy(&gw, RTA_DATA(a), 4);
      route.gateway = wire::Ipv4Addr(ntohl(gw));
    }
  }
  return route;
}

std::optional<wire::MacAddr> NextHops::neighbour(wire::Ipv4Addr ip) {
  Request<ndmsg> r{};
  r.nh.nlmsg_len = sizeof r;
  r.nh.nlmsg_type = RTM_GETNEIGH;
  r.nh.nlmsg_flags = NLM_F_REQUEST;
  r.body.ndm_family = AF_INET;
  r.body.ndm_ifindex = ifindex_;
  put_addr(r.attr, r.addr, NDA_DST, ip);
  std::string reply;
  if (!request(&r, sizeof r, reply)) return std::nullopt;
  auto* h = reinterpret_cast<nlmsghdr*>(reply.data());
  if (h->nlmsg_type != RTM_NEWNEIGH) return std::nullopt;
  auto* nd = static_cast<ndmsg*>(NLMSG_DATA(h));
  // A usable address: the states the kernel itself sends with (a stale one is reconfirmed by
  // the raw socket's next send).
  constexpr uint16_t usable =
      NUD_REACHABLE | NUD_STALE | NUD_DELAY | NUD_PROBE | NUD_PERMANENT | NUD_NOARP;
  if (!(nd->ndm_state & usable)) return std::nullopt;
  int len = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof(ndmsg)));
  for (auto* a =
           reinterpret_cast<rtattr*>(reinterpret_cast<char*>(nd) + NLMSG_ALIGN(sizeof(ndmsg)));
       RTA_OK(a, len); a = RTA_NEXT(a, len)) {
    if (a->rta_type == NDA_LLADDR && RTA_PAYLOAD(a) == 6) {
      wire::MacAddr mac;
      std::memcpy(mac.b.data(), RTA_DATA(a), 6);
      return mac;
    }
  }
  return std::nullopt;
}

std::optional<wire::MacAddr> NextHops::lookup(wire::Ipv4Addr dst, TimePoint now) {
  auto it = cache_.find(dst.v);
  if (it != cache_.end() && now < it->second.until) return it->second.mac;
  std::optional<wire::MacAddr> mac;
  if (auto route = route_to(dst); route && route->oif == ifindex_)
    mac = neighbour(route->gateway.value_or(dst));
  if (cache_.size() > 65536) cache_.clear();  // a bound: one entry per client address
  cache_[dst.v] = Entry{mac, now + (mac ? kKeepAnswer : kKeepMiss)};
  return mac;
}

}  // namespace us::sys
