// The nodes' UDP datagram protocol, without the socket: heartbeats (both ways), relayed client
// packets (backup -> primary) and strays (primary -> backup), each one authenticated frame
// (crypto/frame_auth) whose counter grows by one per datagram sent. Read peer/messages.hpp first.
//
// UDP may lose, duplicate and reorder, so only heartbeats are replay-checked: a replayed heartbeat
// must not keep a dead peer alive (DESIGN.md section 5). A relayed or stray client packet that
// arrives twice is a TCP duplicate, which the packet layer and the kernels already absorb.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "crypto/frame_auth.hpp"
#include "crypto/key.hpp"
#include "peer/messages.hpp"
#include "wire/address.hpp"

namespace us::peer {

// Bytes a datagram adds to its payload (frame header and tag), before IP and UDP headers.
inline constexpr size_t kDatagramOverhead = crypto::kFrameHeader + crypto::kFrameTag;

// One accepted datagram. `payload` points into the bytes passed to Datagrams::open.
struct Datagram {
  Type type;
  uint64_t counter;
  std::span<const uint8_t> payload;
  std::optional<Heartbeat> heartbeat;  // set iff type == Heartbeat
};

enum class DatagramReject {
  WrongSource,         // not from the configured peer address
  Unauthenticated,     // crypto::FrameAuth refused it (see Rejection::auth)
  MalformedHeartbeat,  // authenticated, but the heartbeat payload does not decode
  ReplayedHeartbeat,   // boot id older, or same boot id and a counter that did not grow
  UnknownType,         // authenticated, a type this protocol does not carry
};
const char* to_string(DatagramReject r);

struct Rejection {
  DatagramReject reason;
  crypto::AuthError auth = crypto::AuthError::BadTag;  // only meaningful for Unauthenticated
};

class Datagrams {
 public:
  // One key per direction, derived from the pre-shared master key and the sender's role: a
  // datagram reflected back to its sender (or sent by a peer configured with our role) fails
  // authentication instead of passing for the peer's. `peer` is the only address datagrams are
  // accepted from.
  Datagrams(const crypto::Key& master, Role self, wire::Ipv4Addr peer);

  // Appends one sealed datagram to out; each call uses the next counter (the first is 1).
  void seal(std::vector<uint8_t>& out, Type type, std::span<const uint8_t> payload);

  // The accept rules, in order: source address, authentication, then for heartbeats the decode
  // and the replay rule (boot ids and counters only grow; an accepted heartbeat raises both).
  // Relays and strays pass without a replay check.
  Result<Datagram, Rejection> open(std::span<const uint8_t> bytes, wire::Ipv4Addr from);

  // Rejections by reason, and the total status reports as peer_channel.rejected_datagrams: wrong
  // source, unauthenticated and replayed (malformed and unknown ones only come from a peer bug).
  uint64_t rejected(DatagramReject r) const { return rejected_[static_cast<size_t>(r)]; }
  uint64_t rejected() const;

 private:
  Result<Datagram, Rejection> reject(DatagramReject r,
                                     crypto::AuthError a = crypto::AuthError::BadTag);

  crypto::FrameAuth send_auth_, recv_auth_;
  wire::Ipv4Addr peer_;
  uint64_t next_counter_ = 1;
  uint64_t peer_boot_ = 0, peer_counter_ = 0;  // of the newest accepted heartbeat
  uint64_t rejected_[5] = {};
};

}  // namespace us::peer
