// The message layer (the paper's "TCP proxy"): the local end of every client connection, accepted
// from the TUN side. It frames HTTP messages (http/framer), forwards requests to the local web
// server, and replicates replies:
//
//   primary: client bytes -> server;  server bytes -> Reply to backup -> (ReplyAck) -> client
//   backup:  client bytes -> request cache;  Reply bytes -> mirror socket (its kernel keeps the
//            same stream; the packet layer holds the segments);  ReplyEnd trims the cache
//   backup after a takeover: cached requests with no complete reply go to its own server; a reply
//            cut mid-way is regenerated and the bytes the client may already have are checked,
//            not resent (DESIGN.md section 3, "Large messages").
//
// Reply bytes are released to the client only once the backup holds them (I2); replies and the
// connection close are replicated in order over one channel, so markers follow their data.
//
// This class is the socket adapter: it accepts, reads, writes, connects and sets epoll interest.
// Each connection's logic is a Session (session.hpp, no I/O, no clock); the backup's request
// cache accounting is a RequestCache (request_cache.hpp). A finished session is destroyed when
// the event that finished it has been handled, never inside a handler.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "common/histogram.hpp"
#include "common/result.hpp"
#include "core/vocabulary.hpp"
#include "message/flows.hpp"
#include "message/request_budget.hpp"
#include "message/request_cache.hpp"
#include "message/request_identity.hpp"
#include "message/session.hpp"
#include "message/settings.hpp"
#include "peer/messages.hpp"
#include "sys/event_loop.hpp"

namespace us::message {

class MessageLayer : private SessionHost {
 public:
  MessageLayer(sys::EventLoop& loop, Flows& flows, peer::ConnSender& link, Settings s);
  ~MessageLayer() override;
  Result<Ok, std::string> start();

  void on_peer_message(const peer::ConnMessage& m);
  void take_over();  // backup: the primary died (the mode is already Simplex)
  void peer_lost();  // primary: the backup died (the mode is already Simplex)
  // A survivor whose peer rejoins: every connection open now stays this node's alone, handled
  // as in simplex until it ends (Session::mark_unprotected). Connections opened later are normal.
  void mark_unprotected();
  // Unprotected connections held at a request boundary (Session::holding_for_handover) whose
  // kernel socket is quiet too: the candidates to hand to the rejoined peer, each with the client
  // seq its streams restart at and the client bytes its kernel holds unread. A connection held
  // longer than `pause` without getting quiet reads on (and is tried at its next boundary).
  struct Handover {
    ConnKey key;
    wire::SeqNum client_next;
    std::vector<uint8_t> unread;
  };
  std::vector<Handover> ready_for_handover(Clock::duration pause);
  // The packet layer handed `key` to the peer: the session restarts protected at the boundary.
  void protect_again(const ConnKey& key);
  // The peer refused a connection handed to it: served alone again.
  void adoption_refused(const ConnKey& key);
  // A joiner about to adopt `key` while it has its own copy: that copy goes now (Session::discard).
  void discard(const ConnKey& key);
  void flush();  // coalesced ReplyAcks
  void sweep();  // every second: idle, slow and abandoned connections
  size_t connections() const { return conns_.size(); }
  size_t unprotected_connections() const;
  size_t protected_connections() const { return connections() - unprotected_connections(); }
  const Counters& counters() const { return counters_; }
  uint64_t request_bytes_waiting() const { return budget_.bytes(); }  // RequestBudget
  // Primary in duplex: reply bytes sent to the backup that it has not acknowledged yet (I2 holds
  // them from the client), and how long the oldest of them has waited. One walk over the
  // connections: for a scrape, not for the packet path.
  struct ReplicationLag {
    uint64_t bytes = 0;
    Clock::duration oldest{};
  };
  ReplicationLag replication_lag(TimePoint now) const;

  // Where a request's time goes (docs/PERFORMANCE.md), in microseconds.
  using Timing = message::Timing;
  const Timing& timing() const { return timing_; }
  void reset_timing() { timing_ = Timing{}; }

  struct Conn;

 private:
  Mode mode() const { return s_.mode ? s_.mode() : Mode::Starting; }
  Conn& conn_for(const ConnKey& key, TimePoint now);
  Conn* find(const ConnKey& key);
  void on_accept();
  void on_client_event(const ConnKey& key, uint32_t events);
  void on_upstream_event(const ConnKey& key, uint32_t events);
  void read_client(Conn& c, TimePoint now);
  void read_upstream(Conn& c, TimePoint now);
  void drive(Conn& c, TimePoint now);
  void write_client(Conn& c, TimePoint now);
  void write_upstream(Conn& c, TimePoint now);
  void update_interest(Conn& c);
  template <typename Fn>
  void for_each_open(Fn&& fn);
  void after_event();

  // SessionHost
  bool open_server(const ConnKey& key) override;
  void close_server(const ConnKey& key) override;
  void finished(const ConnKey& key) override;

  sys::EventLoop& loop_;
  Settings s_;
  sys::Fd listener_;
  RequestCache cache_;
  RequestBudget budget_;
  Counters counters_;
  Timing timing_;
  RequestIdentity identity_;
  SessionContext ctx_;
  std::unordered_map<ConnKey, std::unique_ptr<Conn>, ConnKeyHash> conns_;
  std::unordered_set<ConnKey, ConnKeyHash> ack_dirty_;
  std::unordered_map<uint32_t, size_t> per_source_;  // admitted connections per client address
  std::vector<ConnKey> finished_;                    // destroyed by after_event()
  std::vector<uint8_t> buf_;
};

}  // namespace us::message
