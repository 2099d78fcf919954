// The UDP adapter of the datagram protocol (peer/datagram.hpp): one socket bound to this node's
// LAN address and the peer port, sending sealed datagrams to the peer and handing accepted ones
// to the node. Read peer/datagram.hpp first; this file only moves bytes and logs.
#pragma once
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "crypto/key.hpp"
#include "peer/datagram.hpp"
#include "sys/event_loop.hpp"
#include "sys/fd.hpp"
#include "sys/send_queue.hpp"
#include "wire/address.hpp"

namespace us::node {

class DatagramSocket {
 public:
  DatagramSocket(const crypto::Key& master, Role self, wire::Ipv4Addr local, wire::Ipv4Addr peer,
                 uint16_t port, uint64_t boot_id);
  // Fails with "node.address: bind <ip>:<port>: <errno text>". on_readable runs in the loop.
  Result<Ok, std::string> open(sys::EventLoop& loop, std::function<void()> on_readable);
  // Relays and strays (client packets) are queued and sent together by flush(), at the end of
  // the batch that made them; any other type goes at once, after what is queued (a heartbeat
  // must not wait for a busy batch).
  void send(peer::Type type, std::span<const uint8_t> payload);
  void flush() { queue_.flush(fd_.get()); }
  // Reads up to 256 datagrams, or until none is left when `drain`; calls on_datagram for each one
  // accepted. An unauthenticated one is logged (the 1st, 101st, ...).
  void receive(bool drain, const std::function<void(const peer::Datagram&)>& on_datagram);
  uint64_t rejected() const { return proto_.rejected(); }
  // Datagrams from the peer's address that failed authentication (a different key, or forged).
  uint64_t unauthenticated() const { return unauthenticated_; }

 private:
  peer::Datagrams proto_;
  wire::Ipv4Addr local_, peer_;
  uint16_t port_;
  sys::Fd fd_;
  std::vector<uint8_t> rx_, out_;
  sys::SendQueue queue_;
  uint64_t unauthenticated_ = 0;
};

}  // namespace us::node
