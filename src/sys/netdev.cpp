#include "sys/netdev.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/filter.h>
#include <linux/if_packet.h>
#include <linux/if_tun.h>
#include <linux/sockios.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstring>

#include "wire/offload.hpp"

namespace us::sys {
namespace {

// Packets the TUN device queues from the kernel to the daemon (Linux's default is 500): room for
// the windows of a few dozen busy connections at once, a few MiB at most.
constexpr int kTunQueuePackets = 4096;

Result<Fd, std::string> ioctl_socket() {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) return Err{errno_text("socket")};
  return s;
}

void fill_ifr(ifreq& ifr, const std::string& name) {
  std::memset(&ifr, 0, sizeof ifr);
  std::strncpy(ifr.ifr_name, name.c_str(), IFNAMSIZ - 1);
}

}  // namespace

Result<LinkInfo, std::string> link_info(const std::string& ifname) {
  auto s = ioctl_socket();
  if (!s) return Err{s.error()};
  ifreq ifr;
  LinkInfo info;
  fill_ifr(ifr, ifname);
  if (::ioctl(s->get(), SIOCGIFINDEX, &ifr) != 0)
    return Err{errno_text(("interface " + ifname).c_str())};
  info.index = ifr.ifr_ifindex;
  fill_ifr(ifr, ifname);
  if (::ioctl(s->get(), SIOCGIFHWADDR, &ifr) != 0) return Err{errno_text("SIOCGIFHWADDR")};
  std::memcpy(info.mac.b.data(), ifr.ifr_hwaddr.sa_data, 6);
  fill_ifr(ifr, ifname);
  if (::ioctl(s->get(), SIOCGIFMTU, &ifr) != 0) return Err{errno_text("SIOCGIFMTU")};
  info.mtu = ifr.ifr_mtu;
  return info;
}

std::vector<std::string> enabled_offloads(const std::string& ifname) {
  std::vector<std::string> on;
  auto s = ioctl_socket();
  if (!s) return on;
  struct Query {
    uint32_t cmd;
    const char* name;
  };
  for (auto q : {Query{ETHTOOL_GGRO, "gro"}, Query{ETHTOOL_GTXCSUM, "tx-checksum"},
                 Query{ETHTOOL_GTSO, "tso"}, Query{ETHTOOL_GGSO, "gso"}}) {
    ethtool_value ev{};
    ev.cmd = q.cmd;
    ifreq ifr;
    fill_ifr(ifr, ifname);
    ifr.ifr_data = reinterpret_cast<char*>(&ev);
    if (::ioctl(s->get(), SIOCETHTOOL, &ifr) == 0 && ev.data) on.emplace_back(q.name);
  }
  return on;
}

void set_link_down(const std::string& ifname) {
  auto s = ioctl_socket();
  if (!s) return;
  ifreq ifr;
  fill_ifr(ifr, ifname);
  if (::ioctl(s->get(), SIOCGIFFLAGS, &ifr) != 0) return;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags & ~IFF_UP);
  ::ioctl(s->get(), SIOCSIFFLAGS, &ifr);
}

Result<LanTap, std::string> LanTap::open(const LinkInfo& link, wire::Endpoint advertised) {
  LanTap tap;
  tap.ifindex_ = link.index;
  // SOCK_RAW (Ethernet header included): PACKET_VNET_HDR is refused on SOCK_DGRAM.
  tap.ip_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_IP)));
  if (!tap.ip_) return Err{errno_text("AF_PACKET socket (needs root)")};
  // Classic BPF over the IP header: dst == advertised ip, proto TCP, dst port == advertised port.
  uint32_t ip = advertised.ip.v;
  uint32_t port = advertised.port;
  constexpr uint32_t l2 = kEthernetHeader;
  sock_filter code[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, l2 + 16),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ip, 0, 8),
      BPF_STMT(BPF_LD | BPF_B | BPF_ABS, l2 + 9),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_TCP, 0, 6),
      BPF_STMT(BPF_LD | BPF_H | BPF_ABS,
               l2 + 6),  // fragments carry no TCP header: let user space count them
      BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 3, 0),
      BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, l2),
      BPF_STMT(BPF_LD | BPF_H | BPF_IND, l2 + 2),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, port, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0x40000),
      BPF_STMT(BPF_RET | BPF_K, 0),
  };
  // A failed ip/proto match jumps to "return 0"; a non-first fragment to "accept".
  sock_fprog prog{static_cast<unsigned short>(std::size(code)), code};
  if (::setsockopt(tap.ip_.get(), SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog) != 0)
    return Err{errno_text("SO_ATTACH_FILTER")};
  int one = 1;
  ::setsockopt(tap.ip_.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  if (::setsockopt(tap.ip_.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0)
    return Err{errno_text("PACKET_VNET_HDR")};
  sockaddr_ll sll{};
  sll.sll_family = AF_PACKET;
  sll.sll_protocol = htons(ETH_P_IP);
  sll.sll_ifindex = link.index;
  if (::bind(tap.ip_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
    return Err{errno_text("bind AF_PACKET")};
  int rcvbuf = 8 << 20;
  ::setsockopt(tap.ip_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &rcvbuf, sizeof rcvbuf);

  tap.arp_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, htons(ETH_P_ARP)));
  if (!tap.arp_) return Err{errno_text("AF_PACKET ARP socket")};
  ::setsockopt(tap.arp_.get(), SOL_PACKET, PACKET_IGNORE_OUTGOING, &one, sizeof one);
  sll.sll_protocol = htons(ETH_P_ARP);
  if (::bind(tap.arp_.get(), reinterpret_cast<sockaddr*>(&sll), sizeof sll) != 0)
    return Err{errno_text("bind AF_PACKET ARP")};
  return tap;
}

std::span<uint8_t> LanTap::recv_frame(std::vector<uint8_t>& buf) {
  for (;;) {
    sockaddr_ll from{};
    socklen_t len = sizeof from;
    ssize_t n =
        ::recvfrom(ip_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return {};
    if (from.sll_pkttype != PACKET_HOST) continue;
    return {buf.data(), static_cast<size_t>(n)};
  }
}

RecvBatch::RecvBatch(size_t packets, size_t packet_bytes)
    : bufs_(packets, std::vector<uint8_t>(packet_bytes)),
      lens_(packets, 0),
      msgs_(packets),
      iov_(packets),
      from_(packets) {}

size_t LanTap::recv_frame_batch(RecvBatch& b) {
  const size_t cap = b.capacity();
  for (size_t i = 0; i < cap; ++i) {
    b.iov_[i] = {b.bufs_[i].data(), b.bufs_[i].size()};
    b.msgs_[i] = mmsghdr{};
    b.msgs_[i].msg_hdr.msg_iov = &b.iov_[i];
    b.msgs_[i].msg_hdr.msg_iovlen = 1;
    b.msgs_[i].msg_hdr.msg_name = &b.from_[i];
    b.msgs_[i].msg_hdr.msg_namelen = sizeof b.from_[i];
  }
  int n = ::recvmmsg(ip_.get(), b.msgs_.data(), static_cast<unsigned>(cap), 0, nullptr);
  b.size_ = 0;
  for (int i = 0; i < n; ++i) {
    if (b.from_[i].sll_pkttype != PACKET_HOST) continue;
    // Compacted: packet k of the batch is in buffer k.
    if (b.size_ != static_cast<size_t>(i)) std::swap(b.bufs_[b.size_], b.bufs_[i]);
    b.lens_[b.size_++] = b.msgs_[i].msg_len;
  }
  return n > 0 ? static_cast<size_t>(n) : 0;
}

std::span<uint8_t> LanTap::recv_arp(std::vector<uint8_t>& buf) {
  for (;;) {
    sockaddr_ll from{};
    socklen_t len = sizeof from;
    ssize_t n =
        ::recvfrom(arp_.get(), buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return {};
    if (from.sll_pkttype == PACKET_OUTGOING) continue;
    return {buf.data(), static_cast<size_t>(n)};
  }
}

bool LanTap::send_arp_frame(std::span<const uint8_t> frame) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_ARP);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, frame.data(), 6);
  return ::sendto(arp_.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to),
                  sizeof to) == static_cast<ssize_t>(frame.size());
}

Result<RawSender, std::string> RawSender::open() {
  RawSender r;
  r.fd_.reset(::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_RAW));
  if (!r.fd_) return Err{errno_text("raw socket (needs root)")};
  int sndbuf = 8 << 20;
  ::setsockopt(r.fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
  return r;
}

bool RawSender::send(std::span<const uint8_t> packet) {
  if (packet.size() < 20) return false;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  std::memcpy(&to.sin_addr, packet.data() + 16, 4);
  return ::sendto(fd_.get(), packet.data(), packet.size(), 0, reinterpret_cast<sockaddr*>(&to),
                  sizeof to) == static_cast<ssize_t>(packet.size());
}

void RawSender::queue(std::span<const uint8_t> packet) {
  if (packet.size() < 20) return;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  std::memcpy(&to.sin_addr, packet.data() + 16, 4);
  queue_.push(fd_.get(), packet, to);
}

Result<LanSender, std::string> LanSender::open(const LinkInfo& link) {
  LanSender s;
  s.ifindex_ = link.index;
  s.mac_ = link.mac;
  // Protocol 0: this socket sends only; it is handed no frame.
  s.fd_.reset(::socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd_) return Err{errno_text("AF_PACKET send socket")};
  int one = 1;
  if (::setsockopt(s.fd_.get(), SOL_PACKET, PACKET_VNET_HDR, &one, sizeof one) != 0)
    return Err{errno_text("PACKET_VNET_HDR (send)")};
  int sndbuf = 8 << 20;
  ::setsockopt(s.fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
  return s;
}

void LanSender::queue(const wire::SegmentPlan& plan, std::span<const uint8_t> ip, size_t first,
                      size_t count, wire::MacAddr next_hop) {
  sockaddr_ll to{};
  to.sll_family = AF_PACKET;
  to.sll_protocol = htons(ETH_P_IP);
  to.sll_ifindex = ifindex_;
  to.sll_halen = 6;
  std::memcpy(to.sll_addr, next_hop.b.data(), 6);
  queue_.push_built_to(fd_.get(), &to, sizeof to, [&](std::vector<uint8_t>& out) {
    wire::append_gso_frame(plan, ip, first, count, next_hop, mac_, out);
  });
}

bool LanSender::refuses_gso(int err) {
  return err == EINVAL || err == EOPNOTSUPP || err == EMSGSIZE || err == EPROTONOSUPPORT;
}

Result<Tun, std::string> Tun::open(const std::string& name, wire::Ipv4Addr address, int prefix,
                                   int mtu) {
  Tun t;
  t.fd_.reset(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!t.fd_) return Err{errno_text("/dev/net/tun")};
  ifreq ifr;
  fill_ifr(ifr, name);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(t.fd_.get(), TUNSETIFF, &ifr) != 0) return Err{errno_text("TUNSETIFF")};
  // Checksums and TCP segmentation (with ECN) are left to this side: the kernel's stack then
  // builds 64 KiB segments, as it does for a NIC with TSO, instead of one per MSS.
  if (::ioctl(t.fd_.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO_ECN) != 0)
    return Err{errno_text("TUNSETOFFLOAD")};
  auto s = ioctl_socket();
  if (!s) return Err{s.error()};
  fill_ifr(ifr, name);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(address.v);
  if (::ioctl(s->get(), SIOCSIFADDR, &ifr) != 0) return Err{errno_text("SIOCSIFADDR on TUN")};
  fill_ifr(ifr, name);
  sin->sin_family = AF_INET;
  sin->sin_addr.s_addr = htonl(prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix));
  if (::ioctl(s->get(), SIOCSIFNETMASK, &ifr) != 0) return Err{errno_text("SIOCSIFNETMASK")};
  fill_ifr(ifr, name);
  ifr.ifr_mtu = mtu;
  if (::ioctl(s->get(), SIOCSIFMTU, &ifr) != 0) return Err{errno_text("SIOCSIFMTU")};
  // The kernel writes a whole congestion window into this queue within one system call (a reply
  // write, or the ACK that opens the window), and TUN drops what does not fit. At a takeover the
  // survivor's sockets, their windows grown in duplex, overflowed the default 500 packets; a
  // lost one-segment reply or SYN-ACK then waited for the kernel's 200 ms RTO (or the client's
  // 1 s SYN timer): the failover stall p99 of issue 11.
  fill_ifr(ifr, name);
  ifr.ifr_qlen = kTunQueuePackets;
  if (::ioctl(s->get(), SIOCSIFTXQLEN, &ifr) != 0) return Err{errno_text("SIOCSIFTXQLEN")};
  fill_ifr(ifr, name);
  if (::ioctl(s->get(), SIOCGIFFLAGS, &ifr) != 0) return Err{errno_text("SIOCGIFFLAGS")};
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  if (::ioctl(s->get(), SIOCSIFFLAGS, &ifr) != 0) return Err{errno_text("SIOCSIFFLAGS")};
  return t;
}

std::span<uint8_t> Tun::read(std::vector<uint8_t>& buf) {
  ssize_t n = ::read(fd_.get(), buf.data(), buf.size());
  if (n <= 0) return {};
  return {buf.data(), static_cast<size_t>(n)};
}

bool Tun::write(std::span<const uint8_t> packet) {
  // No GSO, and no claim about the checksum: the kernel still verifies it, as before offloads.
  static const uint8_t none[wire::VnetHeader::kLen] = {};
  iovec iov[2] = {{const_cast<uint8_t*>(none), sizeof none},
                  {const_cast<uint8_t*>(packet.data()), packet.size()}};
  return ::writev(fd_.get(), iov, 2) == static_cast<ssize_t>(sizeof none + packet.size());
}

}  // namespace us::sys
