// Per-connection state of the packet layer. Two sequence spaces meet here: the client-facing one
// (what the client sees; identical on both nodes, I3) and the local kernel's (each node's own
// TUN-side connection). Client sequence numbers pass through untouched; server sequence numbers are
// shifted by a per-connection offset chosen so that both nodes present the same ISN.
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <optional>
#include <string>
#include <vector>

#include "core/vocabulary.hpp"
#include "wire/address.hpp"
#include "wire/seq.hpp"

namespace us::packet {

// A kernel segment kept, already rewritten for the client, until the client acknowledges it, so a
// backup taking over can send it at once instead of waiting for its kernel's backed-off timer.
struct RetainedSegment {
  wire::SeqNum seq;
  wire::SeqNum end;
  std::vector<uint8_t> packet;
  TimePoint kept_at{};  // when this node's kernel wrote it (the primary sent its copy about then)
};

struct Flow {
  ConnKey key;
  wire::Endpoint client;
  wire::Endpoint fake;      // the made-up source the local kernel sees
  wire::SeqNum server_isn;  // client-facing ISN (deterministic, I3)

  // Kernel side, learnt from the local kernel's segments.
  bool kernel_isn_known = false;
  wire::SeqOffset kernel_to_client;  // client-facing = kernel_to_client.apply(kernel seq)
  wire::SeqNum kernel_snd_nxt;       // client-facing: end of the highest kernel segment
  wire::SeqNum kernel_rcv_nxt;       // client seq: the kernel's latest ACK number
  uint16_t kernel_window = 0;        // raw field
  uint8_t window_shift = 0;          // scale the client applies to our window field
  // Payload bytes per segment of this kernel's super-segments (its MSS for the client; the
  // TUN frame's gso_size): how a kept or sent super-segment is cut. 0: none seen yet.
  uint16_t segment_size = 0;
  bool client_offered_wscale = false;
  // The client's SYN options, handed on with the connection (Adoption).
  std::optional<uint8_t> client_wscale;
  uint16_t client_mss = 536;
  bool client_sack_ok = false;

  // Client side.
  // RFC 5961: the client's next seq as far as this node knows (the end of the highest in-order
  // client segment; a RST must carry it, or the kernel's ACK number, exactly), the largest window
  // it ever offered (scaled; an ACK further below client_acked is dropped, as Linux does) and
  // when this flow last sent a challenge ACK.
  wire::SeqNum client_nxt;
  uint32_t client_max_window = 0;
  std::optional<wire::SeqNum> client_right;  // client-facing: highest ack + window it offered
  std::optional<TimePoint> last_challenge;
  bool client_ack_seen = false;
  wire::SeqNum client_acked;  // client-facing: highest ACK from the client
  uint16_t client_window = 0;
  bool have_kernel_ack_given = false;
  wire::SeqNum kernel_ack_given;  // client-facing: highest ACK handed to the local kernel

  // Primary in duplex: ACK gating (I1). The client is never acknowledged past what the backup has.
  bool backup_has_known = false;
  wire::SeqNum backup_has;  // client seq
  std::optional<wire::SeqNum> backup_right;
  std::optional<wire::SeqNum> right_sent;  // right edge of the window last sent to the client
  bool ack_sent_known = false;
  wire::SeqNum ack_sent;  // client seq: highest ACK number sent to the client
  std::optional<std::vector<uint8_t>> held_syn_ack;

  // Backup: what this node holds, reported to the primary.
  bool local_has_known = false;
  HasReport local;  // `has` valid once local_has_known
  std::optional<HasReport> local_reported;
  std::deque<RetainedSegment> retained;
  wire::SeqNum retained_end;
  // Smoothed time from keeping a segment to the client's ACK of it (RFC 6298 weights): the
  // client's round trip plus the replication lag, so a takeover resends on the client's time
  // rather than a fresh connection's.
  std::optional<std::chrono::microseconds> kept_to_ack;
  // After a takeover: when to send the oldest unacknowledged segment again, at doubling gaps,
  // until resend_until.
  std::optional<TimePoint> resend_at;
  std::chrono::microseconds resend_gap{0};
  TimePoint resend_until{};

  // Open on a survivor when its peer rejoined (PacketLayer::mark_unprotected): the peer never saw
  // it, so it is served by this node alone, as in simplex, until it reaches a request boundary
  // and is handed to the peer (PacketLayer::protect), or ends.
  bool unprotected = false;
  // The client seq of the message layer's stream offset 0: the ISN + 1, or for a connection
  // protected again, where the streams restarted (Adoption::client_next).
  wire::SeqNum client_start;
  // Adopted from the survivor: the made-up SYN is in this node's kernel, its SYN-ACK is awaited
  // (it must reach neither the client nor the retained segments), with this window scale.
  // Survivor, just handed over: the window's right edge the client may use until the peer's kernel
  // (fresh, with a small window) reports its own; a larger one would let the client send what
  // that kernel drops.
  std::optional<wire::SeqNum> handover_right;
  bool adopting = false;
  // Made from a client's ACK that returned a SYN cookie (PacketLayer::flow_from_cookie): its
  // kernel gets a made-up SYN as for an adoption, then the client's packets kept meanwhile.
  bool from_cookie = false;
  uint8_t adopt_shift = 0;
  int adopt_tries = 0;
  TimePoint adopt_started{};
  std::vector<uint8_t> adopt_unread;  // handed to this kernel once it holds the connection

  // Lifecycle.
  std::optional<wire::SeqNum> client_fin;  // client seq of the FIN
  std::optional<wire::SeqNum> kernel_fin;  // client-facing seq of the FIN
  bool reset = false;
  std::optional<TimePoint> closed_at;
  TimePoint last_seen;    // the last packet either way
  TimePoint last_client;  // the last client packet admitted (a half-open flow expires by it)
  // Opened by a SYN, the client's ACK not seen yet: in PacketLayer's oldest-first list.
  bool half_open = false;
  std::list<Flow*>::iterator half_open_at;

  bool fully_closed() const;
};

}  // namespace us::packet
