// The /metrics endpoint: a TCP listener served inside the node's event loop, never blocking it
// (the same loop sends heartbeats). Each connection gets one reply (metrics/scrape.hpp) and is
// closed. A scraper that is slow or hostile costs at most Limits::connections sockets for at most
// Limits::deadline each: more connections are closed at once, and a connection that has not
// received its whole reply by its deadline is closed.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>

#include "common/result.hpp"
#include "metrics/scrape.hpp"
#include "sys/event_loop.hpp"
#include "sys/fd.hpp"
#include "wire/address.hpp"

namespace us::metrics {

struct ServerLimits {
  size_t connections = 8;  // open at once; Prometheus scrapes one at a time per target
  std::chrono::milliseconds deadline{2000};
};

class Server {
 public:
  using Render = std::function<std::string()>;
  using Limits = ServerLimits;

  Server(sys::EventLoop& loop, Render render, Limits limits = {})
      : loop_(loop), render_(std::move(render)), limits_(limits) {}
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens (before the node gives up root: the port may be below 1024). Fails with
  // "metrics.listen: bind <ip:port>: <errno text>".
  Result<Ok, std::string> open(const wire::Endpoint& listen);

  struct Stats {
    uint64_t scrapes = 0;    // 200 replies
    uint64_t bad = 0;        // 400, 404, 405
    uint64_t refused = 0;    // closed at once: Limits::connections were open
    uint64_t timed_out = 0;  // closed at the deadline
  };
  const Stats& stats() const { return stats_; }
  size_t open_connections() const { return conns_.size(); }
  uint16_t port() const;  // the port bound (open() may ask for port 0)

 private:
  struct Conn {
    sys::Fd fd;
    ScrapeRequest req;
    std::string out;
    size_t sent = 0;
    bool answered = false;
    sys::EventLoop::TimerId timer = 0;
  };
  void on_accept();
  void on_event(int fd);
  void close(int fd);

  sys::EventLoop& loop_;
  Render render_;
  Limits limits_;
  sys::Fd listener_;
  std::unordered_map<int, std::unique_ptr<Conn>> conns_;
  Stats stats_;
};

}  // namespace us::metrics
