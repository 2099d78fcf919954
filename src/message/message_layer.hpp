// The message layer (the paper's "TCP proxy"): the local end of every client connection, accepted
// from the TUN side. It frames HTTP messages (http/framer), forwards requests to the local web
// server, and replicates replies:
//
//   primary: client bytes -> server;  server bytes -> Reply to backup -> (ReplyAck) -> client
//   socket backup:  client bytes -> request cache;  Reply bytes -> mirror socket (its kernel keeps
//   the same
//            stream; the packet layer holds the segments);  ReplyEnd trims the cache
//   backup after a takeover: cached requests with no complete reply go to its own server; a reply
//            cut mid-way is regenerated and the bytes the client may already have are checked,
//            not resent (DESIGN.md section 3, "Large messages").
//
// Reply bytes are released to the client only once the backup holds them (I2); replies and the
// connection close are replicated in order over one channel, so markers follow their data.
#pragma once
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

#include "common/histogram.hpp"
#include "common/result.hpp"
#include "core/vocabulary.hpp"
#include "http/framer.hpp"
#include "message/flows.hpp"
#include "peer/messages.hpp"
#include "sys/event_loop.hpp"

namespace us::message {

struct Settings {
  Role role = Role::Primary;
  ModeSource mode;             // the node's mode (its mode machine owns it); empty: Starting
  wire::Endpoint listen;       // TUN side
  wire::Endpoint server;       // the local web server
  size_t window = 256 * 1024;  // reply bytes per connection not yet written to the client
  size_t max_connections = 16384;
  uint64_t cache_limit = 256u << 20;               // backup: request bytes held for all connections
  std::chrono::milliseconds idle_timeout{120000};  // serving: close a connection with nothing to do
  std::chrono::milliseconds linger{60000};  // after our FIN, or a replica never accepted: give up
  FaultHook fault;                          // named fault points (docs/FAULTS.md)
};

struct Counters {
  uint64_t accepted = 0, requests = 0, replies = 0, bad_requests = 0, upstream_errors = 0;
  uint64_t regenerated = 0, regen_mismatch = 0, aborted = 0, protocol_errors = 0;
};

class MessageLayer {
 public:
  MessageLayer(sys::EventLoop& loop, Flows& flows, peer::ConnSender& link, Settings s);
  ~MessageLayer();
  Result<Ok, std::string> start();

  void on_peer_message(const peer::ConnMessage& m);
  void take_over();  // backup: the primary died (the mode is already Simplex)
  void peer_lost();  // primary: the backup died (the mode is already Simplex)
  void flush();      // coalesced ReplyAcks
  void sweep();      // every second: idle and abandoned connections
  size_t connections() const { return conns_.size(); }
  const Counters& counters() const { return counters_; }

  // Where a request's time goes (docs/PERFORMANCE.md), in microseconds.
  struct Timing {
    Histogram request;      // first request byte read -> last reply byte written (serving)
    Histogram server;       // first request byte sent to the server -> first reply byte read
    Histogram replication;  // Reply frame sent -> ReplyAck received (primary, duplex)
  };
  const Timing& timing() const { return timing_; }
  void reset_timing() { timing_ = Timing{}; }

  struct Conn;

 private:
  bool replicating() const;
  Mode mode() const { return s_.mode ? s_.mode() : Mode::Starting; }
  Conn& conn_for(const ConnKey& key);
  Conn* find(const ConnKey& key);
  void on_accept();
  void on_client_event(const ConnKey& key, uint32_t events);
  void on_upstream_event(const ConnKey& key, uint32_t events);
  bool read_client(Conn& c);
  bool on_client_bytes(Conn& c, std::span<const uint8_t> data);
  bool forward_requests(Conn& c);
  void expect_new_requests(Conn& c);
  bool open_upstream(Conn& c);
  bool write_upstream(Conn& c);
  bool read_upstream(Conn& c);
  bool on_upstream_bytes(Conn& c, std::span<const uint8_t> data);
  bool on_upstream_eof(Conn& c, bool error);
  bool on_final_reply(Conn& c, const http::ResponseInfo& r);
  bool emit_reply(Conn& c, std::span<const uint8_t> bytes);
  bool maybe_error_reply(Conn& c);
  void maybe_finish(Conn& c);
  void start_close(Conn& c, uint64_t offset);
  bool write_client(Conn& c);
  void settle_request_timing(Conn& c);
  void trim_cache(Conn& c);
  void take_over_conn(Conn& c);
  void close_upstream(Conn& c);
  void destroy(Conn& c, bool reset);
  void update_interest(Conn& c);
  bool cache_full(const Conn& c) const;
  void resume_readers();

  sys::EventLoop& loop_;
  Flows& flows_;
  peer::ConnSender& link_;
  void fault(std::string_view point) const {
    if (s_.fault) s_.fault(point);
  }
  Settings s_;
  sys::Fd listener_;
  std::unordered_map<ConnKey, std::unique_ptr<Conn>, ConnKeyHash> conns_;
  std::unordered_set<ConnKey, ConnKeyHash> ack_dirty_;
  std::unordered_set<ConnKey, ConnKeyHash> paused_;
  uint64_t cache_bytes_ = 0;
  std::optional<ConnKey> finishing_;  // may read past a full cache to end its request
  Counters counters_;
  Timing timing_;
  std::vector<uint8_t> buf_;
};

}  // namespace us::message
