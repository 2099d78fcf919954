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
    case DatagramReject::Reflected:
      return "reflected";
    case DatagramReject::ReplayedPacket:
      return "replayed packet";
  }
  return "?";
}

namespace {
crypto::Key direction_key(const crypto::Key& master, Role sender) {
  return crypto::derive_key(master,
                            std::string("understudy datagram v2 from ") + to_string(sender));
}
}  // namespace

bool ReplayWindow::accept(uint64_t counter) {
  if (counter > newest_) {
    if (counter - newest_ >= kSize) {
      seen_.reset();
    } else {
      for (uint64_t c = newest_ + 1; c < counter; ++c) seen_.reset(c % kSize);
    }
    seen_.set(counter % kSize);
    newest_ = counter;
    return true;
  }
  if (newest_ - counter >= kSize || seen_.test(counter % kSize)) return false;
  seen_.set(counter % kSize);
  return true;
}

void ReplayWindow::restart(uint64_t counter) {
  seen_.reset();
  seen_.set(counter % kSize);
  newest_ = counter;
}

Datagrams::Datagrams(const crypto::Key& master, Role self, wire::Ipv4Addr peer, uint64_t boot_id)
    : send_auth_(direction_key(master, self)),
      recv_auth_(direction_key(master, self == Role::Primary ? Role::Backup : Role::Primary)),
      peer_(peer),
      self_(self),
      boot_id_(boot_id),
      next_counter_(boot_id * 1024 + 1) {}

void Datagrams::seal(std::vector<uint8_t>& out, Type type, std::span<const uint8_t> payload) {
  out.reserve(out.size() + payload.size() + kDatagramOverhead);
  send_auth_.seal(out, static_cast<uint8_t>(type), next_counter_++, payload);
}

uint64_t Datagrams::rejected() const {
  return rejected(DatagramReject::WrongSource) + rejected(DatagramReject::Unauthenticated) +
         rejected(DatagramReject::ReplayedHeartbeat) + rejected(DatagramReject::Reflected) +
         rejected(DatagramReject::ReplayedPacket);
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
      // Ours, come back: it must not count as the peer's (the keys already make this unlikely).
      if (d.heartbeat->role == self_ || (boot_id_ != 0 && d.heartbeat->boot_id == boot_id_))
        return reject(DatagramReject::Reflected);
      // Replayed heartbeats must not keep a dead peer "alive": boot ids and counters only grow.
      if (d.heartbeat->boot_id < peer_boot_ ||
          (d.heartbeat->boot_id == peer_boot_ && d.counter <= peer_counter_))
        return reject(DatagramReject::ReplayedHeartbeat);
      // A new run counts afresh (from its boot id, so normally above the last run anyway).
      if (d.heartbeat->boot_id != peer_boot_) {
        window_.restart(d.counter);
      } else {
        (void)window_.accept(d.counter);
      }
      peer_boot_ = d.heartbeat->boot_id;
      peer_counter_ = d.counter;
      return d;
    }
    case Type::Relay:
    case Type::Stray:
      if (!window_.accept(d.counter)) return reject(DatagramReject::ReplayedPacket);
      return d;
    default:
      return reject(DatagramReject::UnknownType);
  }
}

}  // namespace us::peer
