#include "node/datagram_socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include "sys/socket_address.hpp"

namespace us::node {

DatagramSocket::DatagramSocket(const crypto::Key& master, Role self, wire::Ipv4Addr local,
                               wire::Ipv4Addr peer, uint16_t port, uint64_t boot_id)
    : proto_(master, self, peer, boot_id), local_(local), peer_(peer), port_(port), rx_(65536) {}

Result<Ok, std::string> DatagramSocket::open(sys::EventLoop& loop,
                                             std::function<void()> on_readable) {
  fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) return Err{sys::errno_text("udp socket")};
  int buf = 8 << 20;
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  ::setsockopt(fd_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
  sockaddr_in a = sys::to_sockaddr(local_, port_);
  if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(
        ("node.address: bind " + local_.to_string() + ":" + std::to_string(port_)).c_str())};
  loop.add(fd_.get(), EPOLLIN, [fn = std::move(on_readable)](uint32_t) { fn(); });
  return Ok{};
}

void DatagramSocket::send(peer::Type type, std::span<const uint8_t> payload) {
  sockaddr_in to = sys::to_sockaddr(peer_, port_);
  if (type == peer::Type::Relay || type == peer::Type::Stray) {
    queue_.push_built(fd_.get(), to,
                      [&](std::vector<uint8_t>& out) { proto_.seal(out, type, payload); });
    return;
  }
  flush();
  out_.clear();
  proto_.seal(out_, type, payload);
  ::sendto(fd_.get(), out_.data(), out_.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
}

void DatagramSocket::receive(bool drain,
                             const std::function<void(const peer::Datagram&)>& on_datagram) {
  for (int i = 0; drain || i < 256; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n =
        ::recvfrom(fd_.get(), rx_.data(), rx_.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return;
    auto d = proto_.open({rx_.data(), static_cast<size_t>(n)}, sys::from_sockaddr(from).ip);
    if (d) {
      on_datagram(*d);
    } else if (d.error().reason == peer::DatagramReject::Unauthenticated && ++unauthenticated_ &&
               (proto_.rejected() - 1) % 100 == 0) {
      spdlog::warn("peer: rejected an unauthenticated datagram from {} ({}); {} so far",
                   peer_.to_string(), crypto::to_string(d.error().auth), proto_.rejected());
    }
  }
}

}  // namespace us::node
