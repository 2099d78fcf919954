// Messages between the two nodes. Each travels inside an authenticated frame (crypto/frame_auth):
// heartbeats and relayed client packets over UDP, the rest over one TCP connection (the
// replication channel), in order. Integers are big-endian.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/vocabulary.hpp"

namespace us::peer {

enum class Type : uint8_t {
  // replication channel (TCP)
  Hello = 1,     // both ways, first frame: role, mode, boot id, nonce, shared settings
  Has = 2,       // backup -> primary: the backup holds the client's stream up to a seq (I1)
  Reply = 3,     // primary -> backup: reply-stream bytes at an offset
  ReplyEnd = 4,  // primary -> backup: final reply `index` ends at reply-stream offset `offset`
  Close = 5,     // primary -> backup: FIN after reply-stream offset `offset`
  ReplyAck = 6,  // backup -> primary: holds the reply stream up to `offset` (Close counts as 1)
  Abort = 7,     // primary -> backup: the connection ends with a reset
  Leaving = 8,   // either way, no payload: a planned stop; the peer takes over now (issue 9)
  Adopt = 9,     // survivor -> joiner: hold this connection too from now on (an Adoption)
  AdoptRefused = 10,  // joiner -> survivor: could not; the survivor serves it alone again
  Adopted = 11,       // joiner -> survivor: its kernel holds the connection now
  Confirm = 12,  // both ways, no payload: the first frame under the session keys, which proves the
                 // peer derived them from our fresh nonce (its Hello is no recording)
  // datagrams (UDP)
  Heartbeat = 16,
  Relay = 17,  // backup -> primary: one client IP packet, unchanged
  Stray = 18,  // primary -> backup: a client packet that reached the non-front node
};

struct Hello {
  Role role;
  Mode mode;
  uint64_t boot_id;
  std::array<uint8_t, 16> nonce;
  // The sender's config settings both nodes must share (config::shared_settings): key, value.
  // On the wire after the nonce: count (1), then per setting key length (1), key, value length
  // (1), value. Keys are unique and not empty; both are printable ASCII without spaces (a
  // refusal's reason quotes them on one log line); each at most 255 bytes, at most 255 settings.
  std::vector<std::pair<std::string, std::string>> settings = {};
};
struct Heartbeat {
  Role role;
  Mode mode;
  uint64_t boot_id;
};

// One message on the replication channel after Hello. `value` is the seq (Has), the offset
// (Reply, Close, ReplyAck, ReplyEnd); `index` only for ReplyEnd; `data` only for Reply.
struct ConnMessage {
  Type type;
  ConnKey key;
  uint64_t value = 0;
  uint64_t index = 0;
  std::span<const uint8_t> data;
};

// Has carries, after its seq, the backup kernel's window right edge in `data`: flags (1: bit 0 =
// edge present), edge (4). An empty `data` means no edge.
void encode_has_extra(std::vector<uint8_t>& out, const HasReport& r);
std::optional<HasReport> decode_has(const ConnMessage& m);

void encode(std::vector<uint8_t>& out, const Hello& m);
void encode(std::vector<uint8_t>& out, const Heartbeat& m);
void encode(std::vector<uint8_t>& out, const ConnMessage& m);
// Adopt: key (10), client_next (4), server_next (4), client window (2), window shift (1), client
// window scale (1: 0xff = none), client MSS (2), SACK-permitted (1: 0 or 1), then the unread
// client bytes (the rest).
void encode(std::vector<uint8_t>& out, const Adoption& a);
std::optional<Adoption> decode_adoption(std::span<const uint8_t> payload);
std::optional<Hello> decode_hello(std::span<const uint8_t> payload);
std::optional<Heartbeat> decode_heartbeat(std::span<const uint8_t> payload);
std::optional<ConnMessage> decode_conn(Type type, std::span<const uint8_t> payload);

// Where per-connection messages go: the replication channel to the peer, in order.
class ConnSender {
 public:
  virtual ~ConnSender() = default;
  virtual void send(const ConnMessage& m) = 0;
};

}  // namespace us::peer
