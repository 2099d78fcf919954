// The nodes' UDP datagram protocol, without the socket: heartbeats (both ways), relayed client
// packets (backup -> primary) and strays (primary -> backup), each one authenticated frame
// (crypto/frame_auth) whose counter grows by one per datagram sent. Read peer/messages.hpp first.
//
// UDP may lose, duplicate and reorder. A heartbeat must be newer than every earlier one: a replayed
// heartbeat must not keep a dead peer alive (DESIGN.md section 5). Relayed and stray client packets
// may arrive out of order but only once, within a window of recent counters: a host on the LAN
// that records them cannot play a connection's old segments (an old RST, a SYN) back into it.
#pragma once
#include <bitset>
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
  Reflected,           // a heartbeat carrying our own role or boot id
  ReplayedPacket,      // a relay or stray whose counter was seen, or is older than the window
};
const char* to_string(DatagramReject r);

struct Rejection {
  DatagramReject reason;
  crypto::AuthError auth = crypto::AuthError::BadTag;  // only meaningful for Unauthenticated
};

// The counters accepted lately: each at most once, none older than kSize below the newest (as in
// RFC 4303 section 3.4.3's anti-replay window).
class ReplayWindow {
 public:
  static constexpr uint64_t kSize = 4096;
  // True, and remembered, if `counter` was not seen and is not older than the window.
  bool accept(uint64_t counter);
  // Forgets everything before `counter`, which becomes the newest seen (a peer's new run).
  void restart(uint64_t counter);

 private:
  uint64_t newest_ = 0;
  std::bitset<kSize> seen_;  // bit c % kSize: counter c, for c in (newest_ - kSize, newest_]
};

class Datagrams {
 public:
  // One key per direction, derived from the pre-shared master key and the sender's role: a
  // datagram reflected back to its sender (or sent by a peer configured with our role) fails
  // authentication instead of passing for the peer's. `peer` is the only address datagrams are
  // accepted from. `boot_id` is our run's (it grows across restarts): the first counter is
  // boot_id * 1024 + 1, so a restarted node's counters are above its previous run's and the
  // peer's replay window does not drop them (0: count from 1).
  Datagrams(const crypto::Key& master, Role self, wire::Ipv4Addr peer, uint64_t boot_id = 0);

  // Appends one sealed datagram to out; each call uses the next counter.
  void seal(std::vector<uint8_t>& out, Type type, std::span<const uint8_t> payload);

  // The accept rules, in order: source address, authentication, then for heartbeats the decode,
  // our own role or boot id (reflected), and the replay rule (boot ids and counters only grow; an
  // accepted heartbeat raises both, and one from a new run restarts the window); relays and strays
  // pass the replay window.
  Result<Datagram, Rejection> open(std::span<const uint8_t> bytes, wire::Ipv4Addr from);

  // Rejections by reason, and the total status reports as peer_channel.rejected_datagrams: wrong
  // source, unauthenticated, reflected and replayed (malformed and unknown ones only come from a
  // peer bug).
  uint64_t rejected(DatagramReject r) const { return rejected_[static_cast<size_t>(r)]; }
  uint64_t rejected() const;

 private:
  Result<Datagram, Rejection> reject(DatagramReject r,
                                     crypto::AuthError a = crypto::AuthError::BadTag);

  crypto::FrameAuth send_auth_, recv_auth_;
  wire::Ipv4Addr peer_;
  Role self_;
  uint64_t boot_id_;
  uint64_t next_counter_;
  uint64_t peer_boot_ = 0, peer_counter_ = 0;  // of the newest accepted heartbeat
  ReplayWindow window_;
  uint64_t rejected_[7] = {};
};

}  // namespace us::peer
