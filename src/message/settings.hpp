// What the message layer is configured with, and what it counts and times. Shared by the
// adapter (message_layer.hpp) and the sessions (session.hpp).
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>

#include <string>
#include "common/histogram.hpp"

#include "core/vocabulary.hpp"
#include "wire/address.hpp"
#include "wire/seq.hpp"

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
  std::chrono::milliseconds linger{60000};         // a replica never accepted: give up
  // Bounds against hostile clients (docs/CONFIG.md, limits.*). max_body must be the same on both
  // nodes: it decides a 413, which the backup must be able to produce exactly as the primary.
  uint64_t max_body = 128u << 20;      // a larger request body is answered 413
  size_t request_buffer = 256 * 1024;  // serving: request bytes not yet written upstream
  std::chrono::milliseconds header_timeout{60000};  // a request head must arrive within this
  std::chrono::milliseconds body_timeout{60000};    // the longest gap in a request body
  std::chrono::milliseconds close_timeout{30000};   // closing: the longest wait for the client
  size_t max_per_source = 512;                      // serving: connections per client address
  // Serving: the longest gap between two writes of reply bytes while some wait (a client that
  // does not read); and the node-wide budget of request bytes waiting for the web server.
  std::chrono::milliseconds send_timeout{60000};
  uint64_t request_buffer_total = 256u << 20;
  FaultHook fault;  // named fault points (docs/FAULTS.md)
  // What the web server learns of the client (docs/MESSAGE_LAYER.md, "The client's identity";
  // node.client_address, node.request_id_header). Both must be the same on both nodes: they
  // change the bytes sent upstream, which a takeover sends again.
  enum class ClientAddress { None, XForwardedFor, ProxyV2 };
  ClientAddress client_address = ClientAddress::None;
  std::string request_id_header;  // empty: no request ids
  // The id of request `index` of the stream that began at client seq `start` (the node gives
  // crypto::RequestIdMac); needed when request_id_header is set.
  std::function<std::string(const ConnKey&, wire::SeqNum start, uint64_t index)> request_id;
  wire::Endpoint advertised;  // the PROXY header's destination
};

struct Counters {
  uint64_t accepted = 0, requests = 0, replies = 0, bad_requests = 0, upstream_errors = 0;
  uint64_t regenerated = 0, regen_mismatch = 0, aborted = 0, protocol_errors = 0;
  // Hostile clients: bytes read and dropped after a refused or closed request; connections closed
  // by a deadline (head, body, reading our reply, after our close); connections refused by the
  // per-source cap; reads skipped because the node's request budget was spent.
  uint64_t discarded_bytes = 0, head_timeouts = 0, body_timeouts = 0, close_timeouts = 0;
  uint64_t send_timeouts = 0, refused_per_source = 0, budget_pauses = 0;
  // Bytes of the client streams through the client sockets: read from them (requests), written
  // into them (replies). On a backup in duplex, its mirror of both streams.
  uint64_t request_bytes = 0, reply_bytes = 0;
};

// Where a request's time goes (docs/PERFORMANCE.md), in microseconds.
struct Timing {
  Histogram request;      // first request byte read -> last reply byte written (serving)
  Histogram server;       // first request byte sent to the server -> first reply byte read
  Histogram replication;  // Reply frame sent -> ReplyAck received (primary, duplex)
};

}  // namespace us::message
