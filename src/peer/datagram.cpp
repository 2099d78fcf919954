#include "peer/datagram.hpp"

namespace us::peer {

const char* to_string(DatagramReject r) {
  switch (r) {
    case DatagramReject::WrongSource:
      return "wrong source";
    case DatagramReject::Unauthenticated:
      return "unauthenticated";
    case DatagramReject::MalformedHeartbeat:
      return "malformed heartbeat";
    case DatagramReject::ReplayedHeartbeat:
      return "replayed heartbeat";
    case DatagramReject::UnknownType:
      return "unknown type";
  }
  return "?";
}

namespace {
crypto::Key direction_key(const crypto::Key& master, Role sender) {
  return crypto::derive_key(master,
                            std::string("understudy datagram v2 from ") + to_string(sender));
}
}  // namespace

Datagrams::Datagrams(const crypto::Key& master, Role self, wire::Ipv4Addr peer)
    : send_auth_(direction_key(master, self)),
      recv_auth_(direction_key(master, self == Role::Primary ? Role::Backup : Role::Primary)),
      peer_(peer) {}

void Datagrams::seal(std::vector<uint8_t>& out, Type type, std::span<const uint8_t> payload) {
  out.reserve(out.size() + payload.size() + kDatagramOverhead);
  send_auth_.seal(out, static_cast<uint8_t>(type), next_counter_++, payload);
}

uint64_t Datagrams::rejected() const {
  return rejected(DatagramReject::WrongSource) + rejected(DatagramReject::Unauthenticated) +
         rejected(DatagramReject::ReplayedHeartbeat);
}

Result<Datagram, Rejection> Datagrams::reject(DatagramReject r, crypto::AuthError a) {
  ++rejected_[static_cast<size_t>(r)];
  return Err{Rejection{r, a}};
}

Result<Datagram, Rejection> Datagrams::open(std::span<const uint8_t> bytes, wire::Ipv4Addr from) {
  if (from != peer_) return reject(DatagramReject::WrongSource);
  auto opened = recv_auth_.open(bytes);
  if (!opened) return reject(DatagramReject::Unauthenticated, opened.error());
  Datagram d{static_cast<Type>(opened->type), opened->counter, opened->payload, std::nullopt};
  switch (d.type) {
    case Type::Heartbeat: {
      d.heartbeat = decode_heartbeat(d.payload);
      if (!d.heartbeat) return reject(DatagramReject::MalformedHeartbeat);
      // Replayed heartbeats must not keep a dead peer "alive": boot ids and counters only grow.
      if (d.heartbeat->boot_id < peer_boot_ ||
          (d.heartbeat->boot_id == peer_boot_ && d.counter <= peer_counter_))
        return reject(DatagramReject::ReplayedHeartbeat);
      peer_boot_ = d.heartbeat->boot_id;
      peer_counter_ = d.counter;
      return d;
    }
    case Type::Relay:
    case Type::Stray:
      return d;
    default:
      return reject(DatagramReject::UnknownType);
  }
}

}  // namespace us::peer
