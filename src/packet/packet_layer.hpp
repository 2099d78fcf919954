// The packet layer (the paper's "raw proxy"), with no I/O inside: it takes a packet and the time
// and says what to emit through an Emitter. The node wires the Emitter to the TUN device, the raw
// socket and the peer channels. Read flow.hpp first, then DESIGN.md sections 1-3.
//
//   client --(LAN, AF_PACKET)--> [front node] --relay (backup in duplex)--> [primary]
//
//   each node, client packet:  rewrite (src := fake, dst := TUN, ack -= offset) -> TUN -> kernel
//   each node, kernel segment: rewrite (src := advertised, dst := client, seq += offset) -> client
//                              (the backup in duplex keeps it instead of sending it)
#pragma once
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <unordered_map>
#include <unordered_set>

#include "packet/flow.hpp"
#include "wire/tcp.hpp"

namespace us::packet {

// Lan: this node's own interface (or a stray packet the primary passed on: the client's ARP entry
// was stale). Relay: the backup's relay to the primary.
enum class Source { Lan, Relay };

class Emitter {
 public:
  virtual ~Emitter() = default;
  virtual void to_kernel(std::span<const uint8_t> packet) = 0;
  // `packet` may be a super-segment of this kernel's (a TUN frame with TSO): then segment_size
  // is the payload bytes per segment the client takes (0: it is one segment). Its TCP checksum
  // is not valid: the emitter fills it in (or leaves it to the LAN's segmentation).
  virtual void to_client(std::span<const uint8_t> packet, uint16_t segment_size) = 0;
  virtual void to_primary(std::span<const uint8_t> packet) = 0;  // backup relays client packets
  virtual void backup_has(const ConnKey& key, const HasReport& report) = 0;  // backup -> primary
  virtual void to_front(std::span<const uint8_t> packet) = 0;  // primary: a stray client packet
  // A joiner whose kernel could not take an adopted connection as the survivor holds it.
  virtual void adoption_refused(const ConnKey& key) = 0;
  // A joiner whose kernel holds an adopted connection now (its handshake completed).
  virtual void adopted(const ConnKey& key) = 0;
};

struct Settings {
  Role role = Role::Primary;
  ModeSource mode;  // the node's mode (its mode machine owns it); empty: Starting
  wire::Endpoint advertised;
  wire::Endpoint listen;        // where the message layer listens on the TUN side
  wire::Ipv4Addr fake_first;    // first made-up client address
  uint32_t fake_count = 65000;  // made-up addresses to cycle through
  // Where this run starts in that pool. The node draws it at random: the kernel sockets a killed
  // predecessor left behind (FIN-WAIT, for minutes) still use its first addresses, and one that
  // met an adopted connection's made-up SYN would take it instead of the listener.
  uint32_t fake_start = 0;
  // The client-facing ISN of a connection whose SYN offered `offer` (syn_offer.hpp): keyed,
  // identical on both nodes (I3), with `offer` in its low 8 bits (a SYN cookie).
  std::function<uint32_t(const ConnKey&, uint8_t offer)> server_isn;
  std::chrono::seconds linger{30};  // how long a closed flow absorbs stray packets
  size_t max_flows = 16384;
  // A flow whose handshake the client never completed, silent this long, is dropped (a spoofed
  // SYN's); one with no packet either way this long too (a client that vanished).
  std::chrono::milliseconds half_open_timeout{5000};
  std::chrono::milliseconds flow_idle_timeout{600000};
  // SYN floods: at most this many half-open flows (a SYN beyond it evicts the oldest, as the
  // table being full does: a real client completes its handshake within a round trip, a spoofed
  // one never), and at most this many from one source address (a SYN beyond it is dropped).
  size_t max_half_open = 4096;
  uint32_t half_open_per_source = 128;
  // From this many half-open flows on (0: always), and for a source at its cap, the front answers
  // a SYN with a SYN cookie and keeps nothing: the flow is made when the client's ACK returns it.
  size_t syn_cookie_threshold = 256;
};

struct Counters {
  uint64_t client_packets = 0, relayed = 0, to_kernel = 0, to_client = 0;
  uint64_t dropped_malformed = 0, dropped_bad_checksum = 0, dropped_unknown_flow = 0;
  uint64_t dropped_not_front = 0, sent_to_front = 0, dropped_kernel_unknown = 0,
           dropped_table_full = 0;
  uint64_t acks_clamped = 0, syn_acks_held = 0, fake_acks = 0, kernel_acks_clamped = 0;
  uint64_t takeover_resends = 0;
  uint64_t acks_fabricated = 0, retained_sent = 0, flows_opened = 0;
  // Protected again after a rejoin: handed to the peer (survivor), taken from it (joiner), and
  // handed back to the survivor (refused by the joiner, or reverted after its refusal).
  uint64_t flows_handed = 0, flows_adopted = 0, adoptions_refused = 0;
  uint64_t early_replayed = 0;       // client packets that came before their flow's Adopt
  uint64_t resets_unknown_flow = 0;  // primary, simplex: a RST for a client segment of no flow
  // RFC 5961, blind injection: a RST whose seq is not exactly the client's next (ignored, and
  // challenged when in the window), a SYN with another ISN on a live flow (challenged), ACKs
  // beyond what the client can have been sent or too far below what it acknowledged (dropped);
  // challenge ACKs sent and those the rate limit held back.
  uint64_t rst_ignored = 0, syns_on_live_flow = 0, acks_beyond_sent = 0, acks_too_old = 0;
  uint64_t challenge_acks = 0, challenge_acks_limited = 0;
  // Flows dropped by expire(): a handshake never completed, no packet either way for long.
  uint64_t half_open_expired = 0, idle_expired = 0;
  // SYN floods: half-open flows evicted for a newer SYN; SYNs dropped over the per-source cap.
  uint64_t half_open_evicted = 0, syns_over_source_cap = 0;
  // SYN-ACKs sent as SYN cookies, and flows made from a client's ACK that returned one.
  uint64_t syn_cookies_sent = 0, syn_cookie_flows = 0;
};

class PacketLayer {
 public:
  PacketLayer(Settings settings, Emitter& emit);

  Mode mode() const { return s_.mode ? s_.mode() : Mode::Starting; }
  bool front() const;

  void on_client_packet(std::span<uint8_t> packet, Source source, TimePoint now);
  // A packet of this node's kernel (a TUN frame): `segment_size` as for Emitter::to_client.
  void on_kernel_packet(std::span<uint8_t> packet, TimePoint now, uint16_t segment_size = 0);

  // Primary: what the backup holds (its kernel or its message layer has the bytes below `has`).
  void on_backup_has(const ConnKey& key, const HasReport& report, TimePoint now);
  void on_backup_has(const ConnKey& key, wire::SeqNum seq, TimePoint now) {
    HasReport r;
    r.has = seq;
    on_backup_has(key, r, now);
  }
  // Backup: the local message layer has read the client's stream up to `seq`.
  void note_local_has(const wire::Endpoint& fake, wire::SeqNum seq);
  // Backup in duplex: the primary reset this connection and told the client (a replicated
  // Abort). Ends the flow here too, so the client may reuse its port for a new connection.
  void peer_reset(const ConnKey& key);

  // Backup: the primary died (the mode is already Simplex). Become the only node: send every kept segment now, acknowledge all
  // client data this node holds (Table 2, primary rows).
  void take_over(TimePoint now);
  // Primary: the backup died (the mode is already Simplex). Stop gating and acknowledge what the kernel has.
  void peer_lost(TimePoint now);

  // A survivor whose peer rejoins: every flow open now stays this node's alone (its peer never saw
  // it) and is handled as in simplex, whatever the mode: never relayed, gated, kept or reported in
  // a Has; take_over and peer_lost leave it alone. Flows opened later are protected as usual.
  void mark_unprotected();

  // Survivor, duplex: hands the unprotected flow `key` to the peer at a request boundary: the
  // message layer read and answered every client byte below `client_next`. Nullopt if the flow is
  // not quiet (unacknowledged reply bytes, a FIN or reset, the client told of bytes beyond
  // `unread`): try again later. Otherwise the flow is protected from now on, the peer told nothing yet (I1: a
  // primary acknowledges nothing past `client_next` until the peer's Has; a backup relays and
  // keeps as for any flow), and the peer is sent the result (peer::Type::Adopt).
  // `unread`: the client bytes from client_next on that this node's kernel holds unread; they go
  // to the peer with the connection (the client may have been told they arrived).
  std::optional<Adoption> protect(const ConnKey& key, wire::SeqNum client_next,
                                  std::span<const uint8_t> unread, TimePoint now);
  // Joiner, duplex: takes the survivor's connection: a made-up SYN at client_next - 1 goes into
  // this node's kernel; its SYN-ACK (mapped onto server_next - 1) is answered with the ACK that
  // establishes it and reaches nobody else. False (log says why) if it cannot be taken; a kernel
  // that answers with another window scale than the client uses is refused later, through
  // Emitter::adoption_refused.
  bool adopt(const Adoption& a, TimePoint now);
  // Survivor: the peer refused the flow handed to it; it is served alone again, as after
  // take_over (backup) or peer_lost (primary).
  void unprotect(const ConnKey& key, TimePoint now);
  // Survivor: the peer's kernel holds the flow handed to it (Adopted). Until then the flow counts
  // as unprotected (awaiting_adoption): if this node died first, the peer would not have it.
  void adoption_confirmed(const ConnKey& key);
  size_t awaiting_adoption() const { return awaiting_.size(); }

  // After a takeover: sends a kept segment the client has still not acknowledged again, on a
  // fresh timer (call it often, e.g. every few ms).
  void resend_due(TimePoint now);

  // SYN cookies promise what this kernel answers a SYN; until a handshake has taught it, the node
  // asks: a made-up SYN (offering scaling and SACK) from an address no flow uses, whose SYN-ACK
  // is learnt from and reset at once. Call it now and then (the node: every second) until
  // kernel_syn_ack_known().
  void probe_kernel();
  bool kernel_syn_ack_known() const { return kernel_syn_ack_.has_value(); }

  void flush();  // emit coalesced backup_has notices
  void expire(TimePoint now);

  const Flow* find_by_fake(const wire::Endpoint& fake) const;
  const Flow* find_by_key(const ConnKey& key) const;
  size_t open_flows() const;
  size_t unprotected_flows() const;  // open flows marked by mark_unprotected
  size_t half_open_flows() const { return half_open_.size(); }
  const Counters& counters() const { return counters_; }

 private:
  // The mode a flow is handled in: Simplex for an unprotected flow, else the node's.
  Mode effective_mode(const Flow& f) const { return f.unprotected ? Mode::Simplex : mode(); }
  Flow* new_flow(const wire::TcpPacket& syn, TimePoint now);
  Flow* insert_flow(const ConnKey& key, const wire::Endpoint& client, TimePoint now);
  void serve_alone(Flow& f, TimePoint now);  // backup, the peer gone: send what was kept
  void stop_gating(Flow& f);                 // primary, the peer gone
  void finish_adoption(Flow& f);
  // SYN cookies (syn_offer.hpp): whether a SYN from `source` is answered with one now; the
  // answer; and, for a client ACK that returns a valid one, the flow, its kernel's handshake
  // under way as for an adoption (nullptr: not a cookie, or no room).
  bool cookie_wanted(uint32_t source) const;
  void send_cookie(const wire::TcpPacket& syn);
  bool valid_cookie(const wire::TcpPacket& p) const;
  Flow* flow_from_cookie(const wire::TcpPacket& p, TimePoint now);
  bool pick_fake(Flow& f);  // a made-up address no flow uses; false if none is left
  void send_made_up_syn(Flow& f);
  // A segment made up on the client's behalf, from its made-up address into this node's kernel.
  void to_kernel_as_client(const Flow& f, wire::TcpSegmentSpec spec);
  void refuse_adoption(Flow& f, std::string_view why);  // drops f
  void remember_early(const wire::TcpPacket& p, TimePoint now);
  void replay_early(Flow& f);
  void client_to_kernel(Flow& f, wire::TcpPacket& p, bool syn);
  // RFC 5961: whether a client segment (not a SYN) may change the flow; if not it is counted,
  // maybe answered with a challenge ACK, and must be dropped.
  bool admit(Flow& f, const wire::TcpPacket& p);
  bool rst_exact(const Flow& f, wire::SeqNum seq) const;
  // The highest client-facing seq the client can have been sent by this node or the primary.
  wire::SeqNum sent_bound(const Flow& f) const;
  void challenge_ack(Flow& f);  // RFC 5961 section 7: rate-limited per flow and per node
  void kernel_to_client(Flow& f, wire::TcpPacket& p);
  void retain(Flow& f, wire::SeqNum seq, wire::SeqNum end, const wire::TcpPacket& p);
  // A client ACK covered kept segments: the newest of them was kept `sample` ago.
  void note_kept_to_ack(Flow& f, std::chrono::nanoseconds sample);
  void note_has(Flow& f, wire::SeqNum seq);
  void note_kernel_window(Flow& f, const wire::TcpPacket& p, bool syn_ack);
  void mark_dirty(Flow& f);
  // Primary in duplex: what the client may be told of a kernel segment's ACK, window and SACK.
  void gate(Flow& f, wire::TcpPacket& p);
  wire::SeqNum window_right(const Flow& f, wire::SeqNum kernel_right) const;
  void maybe_fake_ack(Flow& f);
  void send_ack_to_client(Flow& f, wire::SeqNum ack, std::optional<wire::SeqNum> seq = {});
  void release_gate(Flow& f);
  void drop_flow(Flow& f);
  void forget(Flow& f);  // resets this kernel's socket for f, then drops f
  void leave_half_open(Flow& f);

  Settings s_;
  Emitter& emit_;
  Counters counters_;
  std::unordered_map<wire::Endpoint, std::unique_ptr<Flow>, EndpointHash> by_client_;
  std::unordered_map<wire::Endpoint, Flow*, EndpointHash> by_fake_;
  std::unordered_map<ConnKey, Flow*, ConnKeyHash> by_key_;
  // backup_has notices that arrived before the relayed SYN (they travel on another channel).
  std::unordered_map<ConnKey, std::pair<HasReport, TimePoint>, ConnKeyHash> early_has_;
  std::unordered_set<Flow*> dirty_;
  std::deque<std::pair<TimePoint, std::vector<uint8_t>>> early_;
  std::unordered_set<Flow*> resending_;
  std::unordered_set<Flow*> awaiting_;  // handed to the peer, not confirmed yet
  std::list<Flow*> half_open_;          // oldest first
  std::unordered_map<uint32_t, uint32_t> half_open_by_source_;
  uint32_t next_fake_;
  // This kernel's SYN-ACK to a client that offered window scaling and SACK (learnt from each
  // such handshake): a SYN cookie must promise what the kernel will do. No cookie before it.
  struct KernelSynAck {
    uint16_t window = 0;
    uint16_t mss = 536;
    std::optional<uint8_t> wscale;
    bool sack = false;
  };
  std::optional<KernelSynAck> kernel_syn_ack_;
  std::optional<wire::Endpoint> probe_;  // the made-up address of the probe awaiting its answer
  void learn_syn_ack(const wire::TcpPacket& syn_ack);
  void on_probe_answer(const wire::TcpPacket& p);
  TimePoint now_{};
  // Challenge ACKs left in the current one-second window of the per-node limit.
  TimePoint challenge_window_start_{};
  uint32_t challenge_budget_ = 0;
};

}  // namespace us::packet
