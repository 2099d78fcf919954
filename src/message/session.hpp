// One client connection in the message layer, as a state machine with no I/O and no clock inside
// (the shape of src/packet/packet_layer.hpp; smoltcp's process/dispatch, Envoy's codec callbacks).
// Read message_layer.hpp's header first for what flows where, then this file.
//
// The adapter (MessageLayer) owns the sockets and the clock. It tells a session what happened
// (client bytes or EOF, server bytes or EOF, bytes it managed to write, peer messages, takeover,
// `now`) and asks what to do next:
//   client_output()   reply bytes to write to the client; the adapter reports what it wrote
//   wants_fin()       half-close the client side now (then on_fin_sent)
//   server_output()   request bytes to write to the server; likewise
//   wants_client_read(), wants_server_read(), has_client_output(), wants_server_write():
//                     epoll interest, computed by the adapter in one place
//   finished()        over (reset(): with an RST); the host is told once, through SessionHost,
//                     and destroys the session after the event, never inside a handler
// What a session does itself, through interfaces: replicate (peer::ConnSender), report what the
// backup holds (Flows, I1), open and close its server connection (SessionHost), and account the
// shared request cache (RequestCache).
#pragma once
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/vocabulary.hpp"
#include "http/framer.hpp"
#include "message/flows.hpp"
#include "message/regeneration.hpp"
#include "message/request_budget.hpp"
#include "message/request_cache.hpp"
#include "message/request_identity.hpp"
#include "message/settings.hpp"
#include "peer/messages.hpp"

namespace us::message {

// What a session asks of the adapter that owns its sockets.
class SessionHost {
 public:
  virtual ~SessionHost() = default;
  // Start connecting to the local web server for `key`. False if that failed at once (the host
  // logs why); the session then resets the client.
  virtual bool open_server(const ConnKey& key) = 0;
  virtual void close_server(const ConnKey& key) = 0;
  // The session is finished: destroy it once the current event is handled.
  virtual void finished(const ConnKey& key) = 0;
};

// Everything a session shares with its siblings.
struct SessionContext {
  const Settings& settings;
  Flows& flows;
  peer::ConnSender& link;
  SessionHost& host;
  RequestCache& cache;
  Counters& counters;
  Timing& timing;
  RequestBudget& budget;            // serving: request bytes waiting for the server, node-wide
  const RequestIdentity& identity;  // what the server learns of the client and the request
};

class Session {
 public:
  Session(const ConnKey& key, SessionContext& ctx, TimePoint now);
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  const ConnKey& key() const { return key_; }

  // --- The client socket. A backup's session may exist before its client is accepted (the
  // primary's Reply frames can arrive first).
  void on_accepted(const wire::Endpoint& fake, TimePoint now);
  // Before each read: applies the request cache's finishing rule, and holds an unprotected
  // connection at its request boundary for the hand-over; false: do not read now.
  bool may_read_client();
  void on_client_bytes(std::span<const uint8_t> data, TimePoint now);
  void on_client_eof(TimePoint now);
  void on_client_error();  // a read or write failed: the client reset; ends without an RST
  std::span<const uint8_t> client_output() const;
  void on_client_written(size_t n, TimePoint now);
  // The client socket took none of client_output() (EAGAIN): the send deadline runs from the
  // last write (limits.send_timeout_ms).
  void on_client_blocked(TimePoint now);
  // How many bytes the next client read may take (fewer once the node's request budget is spent).
  size_t client_read_budget(size_t max) const;
  bool wants_fin() const;
  void on_fin_sent(TimePoint now);

  // --- The server socket, after SessionHost::open_server.
  bool server_connecting() const { return up_.open && up_.connecting; }
  void on_server_connected() { up_.connecting = false; }
  std::span<const uint8_t> server_output() const;
  void on_server_written(size_t n, TimePoint now);
  size_t server_read_budget() const;  // reply bytes that may be read now (the window)
  void on_server_bytes(std::span<const uint8_t> data, TimePoint now);
  void on_server_eof(bool error, TimePoint now);  // closed by the server, or failed

  // --- The peer. ReplyAck in any role; Reply, ReplyEnd, Close, Abort on a backup in duplex.
  void on_peer_message(const peer::ConnMessage& m, TimePoint now);
  bool ack_pending() const { return reply_.ack_pending; }  // a ReplyAck is owed (coalesced)
  void send_ack();
  void take_over(TimePoint now);  // backup: the primary died
  void peer_lost();               // primary: the backup died
  // A survivor whose peer rejoins: the peer never saw this connection, so from now on it is
  // handled as in simplex whatever the mode: no frames replicated, reply bytes acknowledged at
  // once, peer messages ignored; take_over and peer_lost leave it alone. A serving session keeps
  // serving; a replica not accepted yet serves once accepted.
  void mark_unprotected();
  bool unprotected() const { return unprotected_; }
  // An unprotected connection between requests: every request read was answered, every reply
  // byte written, nothing half-read, nothing closing. Only then can its state move to the peer
  // (docs/ARCHITECTURE.md, "Rejoin").
  bool at_request_boundary() const;
  // At a request boundary while the peer is there to take it: the next request is not read (it
  // waits in the kernel and goes to the peer with the connection), for at most the pause the
  // adapter allows (pause_expired); then served alone until its next boundary.
  bool holding_for_handover() const;
  // Notes when the hold began; true once it lasted `limit` (the connection then reads again).
  bool pause_expired(TimePoint now, Clock::duration limit);
  // The client seq of the next byte this session reads.
  wire::SeqNum client_next() const { return client_start_ + static_cast<uint32_t>(client_.read); }
  // At a request boundary, the connection was handed to the peer (packet::PacketLayer::protect):
  // from here it is a protected connection whose streams begin now, as if just accepted (a
  // primary serves, a backup mirrors); the server connection is closed (the next request opens
  // one). A no-op unless at_request_boundary().
  void protect_again(TimePoint now);
  // The peer could not take it: served alone again (a backup's mirror takes over).
  void adoption_refused(TimePoint now);

  // --- The periodic sweep. Deadlines are judged by the serving node only (Idle, SlowHead,
  // SlowBody, SlowRead), which replicates the close or reset it decides, as for the idle
  // timeout; CloseExpired and Abandoned end each node's own copy.
  enum class Quiet { Busy, Idle, Abandoned, SlowHead, SlowBody, SlowRead, CloseExpired };
  Quiet quiet(TimePoint now) const;
  void close_idle(TimePoint now);  // FIN after the last reply
  void abandon();                  // ends without an RST
  // A slow client (SlowHead, SlowBody): the request in progress is answered 408 if every earlier
  // one has its reply (else the connection just closes); later bytes are discarded.
  void time_out(TimePoint now);
  // A client that does not read (SlowRead): reply bytes waited longer than send_timeout for the
  // socket to take any. Reset; in duplex the Abort is replicated, so the backup resets its copy
  // without a takeover.
  void send_timed_out();
  // Closing took longer than close_timeout (the client does not read our reply or does not close):
  // ends with an RST into this node's kernel, the peer told nothing (it has its own deadline).
  void close_expired();
  // Refused by the per-source cap: closed at once (a replicated Close at offset 0, then the FIN),
  // every client byte discarded.
  void refuse(TimePoint now);
  // A joiner's own copy of a connection the survivor hands over (it saw the SYN at the rejoin):
  // ends with an RST into this node's kernel only; the peer and the client are told nothing.
  void discard();

  // --- Queries (epoll interest and tests).
  bool accepted() const { return client_.accepted; }
  bool serving() const { return serving_; }
  bool client_eof() const { return client_.eof; }
  bool blocked_by_cache() const;
  // Client bytes are read and dropped (counted), not kept: after a refused request (the error
  // reply is all that follows) or once the connection is closing (no later request is answered).
  bool discarding() const { return client_.error.has_value() || reply_.close_at.has_value(); }
  // Serving: the server reads slower than the client sends; the client is not read meanwhile.
  bool upstream_full() const;
  // Serving: the node's request budget is spent and this connection already has bytes waiting
  // for its server; the client is not read until the server takes them.
  bool budget_blocked() const;
  bool wants_client_read() const;
  bool has_client_output() const { return !client_output().empty(); }
  bool server_open() const { return up_.open; }
  bool wants_server_write() const { return up_.open && (up_.connecting || !up_.out.empty()); }
  bool wants_server_read() const;
  bool finished() const { return end_ != End::Open; }
  bool reset() const { return end_ == End::Reset; }
  uint64_t reply_total() const { return reply_.total; }
  uint64_t reply_written() const { return reply_.written; }
  // Serving: reply bytes replicated and not yet acknowledged by the peer; when the oldest Reply
  // frame still unacknowledged was sent.
  uint64_t reply_unacked() const { return serving_ ? reply_.total - reply_.acked : 0; }
  std::optional<TimePoint> unacked_since() const {
    if (stamps_.repl_sent.empty()) return std::nullopt;
    return stamps_.repl_sent.front().second;
  }
  uint64_t replies_done() const { return reply_.replies_done; }
  size_t cached_bytes() const { return client_.cache.size(); }
  size_t held_bytes() const { return client_.held.size() + up_.out.size(); }

 private:
  Mode effective_mode() const;  // Simplex when unprotected, else the node's mode
  bool replicating() const;
  void serve_alone(TimePoint now);  // take_over's work
  void fault(std::string_view point) const;
  bool open_upstream();
  void close_upstream();
  void forward_requests(TimePoint now);
  void forward_edited(uint64_t limit);  // held bytes up to `limit`, heads edited, into up_.out
  http::RequestFramer new_framer() const;
  void expect_new_requests();
  void emit_until(std::span<const uint8_t> data, uint64_t up_start, size_t& pos, uint64_t up_end,
                  TimePoint now);
  void emit_reply(std::span<const uint8_t> bytes, TimePoint now);
  void to_stream_indices(std::vector<http::ResponseInfo>& done) const;
  void on_final_reply(const http::ResponseInfo& r, TimePoint now);
  void maybe_error_reply(TimePoint now);
  void maybe_finish(TimePoint now);
  void start_close(uint64_t offset, TimePoint now);
  void settle_request_timing(TimePoint now);
  void trim_cache();
  uint64_t client_limit() const;
  uint64_t error_begin() const;
  void drop_after(uint64_t offset);
  void drop_cache();
  void account_upstream();  // up_.out changed: tell the node's RequestBudget
  void end(bool reset, bool tell_peer = true);

  ConnKey key_;
  SessionContext& ctx_;
  wire::SeqNum client_start_;  // the client seq of request-stream offset 0
  bool serving_ = false;       // this node answers (primary, or a backup after a takeover)
  bool unprotected_ = false;
  // Unprotected by a rejoin: hand it to the peer at a request boundary (not after a refusal).
  bool handover_wanted_ = false;
  std::optional<TimePoint> held_since_;  // holding_for_handover() since
  bool hold_over_ = false;               // held long enough at this boundary
  enum class End { Open, Closed, Reset } end_ = End::Open;
  TimePoint last_active_;
  // Slow clients: the request in progress and when its first byte was read; when closing began
  // (or last made progress: a reply byte written, our FIN).
  std::optional<uint64_t> partial_index_;
  TimePoint partial_began_;
  std::optional<TimePoint> close_since_;
  // Reply bytes have waited for the client socket since (the last write that went through, or
  // the first refused one); empty while the socket takes everything offered.
  std::optional<TimePoint> send_since_;
  size_t budgeted_ = 0;  // up_.out's size as last told to the RequestBudget

  // Client -> server: the request stream, framed as it is read. The backup caches it (until the
  // replicated ReplyEnd shows it answered); a serving node holds it until it may be forwarded.
  struct ClientSide {
    wire::Endpoint fake;  // the address the local kernel gave the client
    bool accepted = false;
    bool eof = false;
    http::RequestFramer framer;
    uint64_t read = 0;  // request-stream bytes read
    std::deque<http::RequestInfo> unanswered;
    // The first bad request: answered in order (after every earlier reply), then the close.
    std::optional<http::FrameError> error;
    uint64_t error_index = 0;
    bool error_sent = false;
    std::string cache;  // backup: request-stream bytes from cache_base on
    uint64_t cache_base = 0;
    std::string held;        // serving: request bytes from `forwarded` on, not yet sent upstream
    uint64_t forwarded = 0;  // request-stream offset sent to the server
    std::optional<uint64_t> skip_before_index;  // after a takeover: requests already answered
  } client_;

  // The local web server's connection, opened on the first request (serving only).
  struct Upstream {
    bool open = false;
    bool connecting = false;
    std::string out;  // request bytes not yet written to the server
    http::ResponseFramer framer;
    uint64_t expected = 0;              // requests announced to the framer
    uint64_t first_index = 0;           // the request the server's first reply answers
    uint64_t origin = 0;                // reply-stream offset of the server's first byte
    std::optional<Regeneration> regen;  // after a takeover: the reply the dead primary began
  } up_;

  // The reply stream to the client: produced here (serving) or replicated (mirror). Bytes are
  // written only once the backup holds them (I2); the FIN only once the backup has the Close.
  struct ReplyStream {
    uint64_t total = 0;    // produced (serving) or received (mirror)
    uint64_t acked = 0;    // serving in duplex: the backup holds up to here
    uint64_t written = 0;  // into the client socket
    std::string out;       // reply bytes [out_base, total)
    uint64_t out_base = 0;
    uint64_t replies_done = 0;
    PartialReply partial;  // mirror: the reply after the last ReplyEnd
    std::optional<uint64_t> close_at;
    bool close_acked = false;
    bool fin_sent = false;
    bool ack_pending = false;  // mirror: Reply bytes not yet acknowledged
  } reply_;

  // Timing (serving only): (request index, when its first byte was read / sent to the server),
  // (reply-stream end, when its request's first byte was read), (Reply end offset, when sent).
  using Stamps = std::deque<std::pair<uint64_t, TimePoint>>;
  struct Stamping {
    Stamps req_started, server_started, reply_ends, repl_sent;
    uint64_t stamped = 0, server_stamped = 0;
  } stamps_;
};

}  // namespace us::message
