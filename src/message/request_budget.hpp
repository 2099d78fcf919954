// The serving node's budget for request bytes waiting for its web server, shared by all sessions
// (docs/CONFIG.md, `limits.request_buffer_total_bytes`). No I/O, no clock. Read session.hpp first.
//
// Each session keeps at most `request_buffer_bytes` for its server, but that times
// `max_connections` is gigabytes. Once the sum reaches this budget, a connection that already has
// bytes waiting for its server is not read until its server takes them; one with nothing waiting
// may still read, in small reads. No deadlock: a paused connection waits only for its own server,
// never for other clients, and a request whose body is not read yet can still start (the server
// gets its head and first bytes, and reads them without waiting for the rest).
#pragma once
#include <cstdint>

namespace us::message {

class RequestBudget {
 public:
  explicit RequestBudget(uint64_t limit) : limit_(limit) {}

  // One session's bytes waiting for its server went from `before` to `after`.
  void update(uint64_t before, uint64_t after) {
    bytes_ -= before;
    bytes_ += after;
  }
  bool over() const { return bytes_ >= limit_; }
  uint64_t bytes() const { return bytes_; }
  uint64_t limit() const { return limit_; }

 private:
  uint64_t limit_;
  uint64_t bytes_ = 0;
};

}  // namespace us::message
