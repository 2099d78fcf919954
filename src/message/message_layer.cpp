#include "message/message_layer.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "core/log.hpp"
#include "sys/socket_address.hpp"

namespace us::message {

namespace {
constexpr int kNotSentLowat = 128 * 1024;  // TCP_NOTSENT_LOWAT of every client socket
}  // namespace

// The sockets of one connection; everything else is in the session.
struct MessageLayer::Conn {
  Conn(const ConnKey& key, SessionContext& ctx, TimePoint now) : session(key, ctx, now) {}
  Session session;
  sys::Fd fd;                  // the accepted client socket; empty for a replica not accepted yet
  sys::Fd up;                  // the local web server
  bool counted = false;        // in per_source_ (admitted by a serving node)
  bool budget_paused = false;  // left unread by the node's request budget (counted once)
};

MessageLayer::MessageLayer(sys::EventLoop& loop, Flows& flows, peer::ConnSender& link, Settings s)
    : loop_(loop),
      s_(std::move(s)),
      cache_(s_.cache_limit),
      budget_(s_.request_buffer_total),
      identity_(s_),
      ctx_{s_, flows, link, *this, cache_, counters_, timing_, budget_, identity_},
      buf_(64 * 1024) {}

MessageLayer::~MessageLayer() = default;

Result<Ok, std::string> MessageLayer::start() {
  listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) return Err{sys::errno_text("socket")};
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a = sys::to_sockaddr(s_.listen);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("bind " + s_.listen.to_string()).c_str())};
  if (::listen(listener_.get(), 4096) != 0) return Err{sys::errno_text("listen")};
  loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return Ok{};
}

MessageLayer::Conn& MessageLayer::conn_for(const ConnKey& key, TimePoint now) {
  auto& slot = conns_[key];
  if (!slot) slot = std::make_unique<Conn>(key, ctx_, now);
  return *slot;
}

MessageLayer::Conn* MessageLayer::find(const ConnKey& key) {
  auto it = conns_.find(key);
  return it == conns_.end() ? nullptr : it->second.get();
}

// ---------------------------------------------------------------------------------------------
// Events. Each ends with after_event(): sessions that finished are destroyed only there.

void MessageLayer::on_accept() {
  for (;;) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    sys::Fd owned(fd);
    wire::Endpoint fake = sys::from_sockaddr(a);
    auto known = ctx_.flows.key_for(fake);
    if (!known) {
      log::warn({.event = "refused", .reason = "no flow"},
                "message: accepted {} with no flow; closing", fake.to_string());
      continue;
    }
    if (conns_.size() >= s_.max_connections && !find(*known)) {
      log::warn({.event = "refused", .conn = *known, .reason = "limits.max_connections"},
                "message: connection limit {} reached; refusing {}", s_.max_connections,
                known->to_string());
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // The send deadline (limits.send_timeout_ms) counts our writes. With few unsent bytes allowed
    // in the kernel, a write goes through once the client let half of them go out, so a download
    // at 2 KiB/s or more is never cut at the default 60 s; without it the kernel wakes a writer
    // only once a third of its send buffer (autotuned up to 4 MiB) drained. It also keeps what a
    // client that reads nothing holds in the kernel small.
    int lowat = kNotSentLowat;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, sizeof lowat);
    auto now = Clock::now();
    // The per-source cap is the serving node's decision alone: it closes the connection at once
    // with a replicated Close at offset 0, which the backup mirrors (a backup that refused on
    // its own count would hold a connection the primary serves, and stall it, I1).
    bool serving = s_.role == Role::Primary || mode() == Mode::Simplex;
    bool over = serving && s_.max_per_source > 0 && !find(*known) &&
                per_source_[known->ip.v] >= s_.max_per_source;
    Conn& c = conn_for(*known, now);
    c.fd = std::move(owned);
    ++counters_.accepted;
    ConnKey key = *known;
    if (!over && !c.counted) {
      c.counted = true;
      ++per_source_[key.ip.v];
    }
    loop_.add(c.fd.get(), EPOLLIN, [this, key](uint32_t ev) { on_client_event(key, ev); });
    if (log::enabled(spdlog::level::debug))
      log::debug({.event = "conn_open", .conn = key}, "message: accepted {}", key.to_string());
    // Accepted only after the peer rejoined, but its flow dates from before (chaos cycles found a
    // request acknowledged and never answered when the session turned into a mirror here).
    if (ctx_.flows.unprotected(fake)) c.session.mark_unprotected();
    c.session.on_accepted(fake, now);
    if (over) {
      if (counters_.refused_per_source == 0 || counters_.refused_per_source % 1000 == 0)
        log::warn({.event = "refused", .conn = key, .reason = "limits.max_connections_per_source"},
                  "message: {} connections from {}: refusing {} (limits.max_connections_per_"
                  "source; {} refused so far)",
                  per_source_[key.ip.v], key.ip.to_string(), key.to_string(),
                  counters_.refused_per_source);
      c.session.refuse(now);
    }
    drive(c, now);
    after_event();
  }
}

void MessageLayer::on_client_event(const ConnKey& key, uint32_t events) {
  Conn* c = find(key);
  if (!c || c->session.finished()) return;
  auto now = Clock::now();
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_client(*c, now);
  if (events & EPOLLOUT) write_client(*c, now);
  if (!c->session.finished()) update_interest(*c);
  after_event();
}

void MessageLayer::on_upstream_event(const ConnKey& key, uint32_t events) {
  Conn* c = find(key);
  if (!c || !c->up || c->session.finished()) return;
  Session& s = c->session;
  auto now = Clock::now();
  if (s.server_connecting() && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c->up.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      log::error({.event = "server_error", .conn = key, .reason = std::strerror(err)},
                 "message: server {} for {}: {}", s_.server.to_string(), key.to_string(),
                 std::strerror(err));
      ++counters_.upstream_errors;
      s.on_server_eof(true, now);
      drive(*c, now);
      after_event();
      return;
    }
    s.on_server_connected();
  }
  if (events & EPOLLOUT) write_upstream(*c, now);
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) read_upstream(*c, now);
  if (!s.finished()) update_interest(*c);
  after_event();
}

void MessageLayer::on_peer_message(const peer::ConnMessage& m) {
  auto now = Clock::now();
  if (m.type == peer::Type::ReplyAck) {
    Conn* c = find(m.key);
    if (!c || c->session.finished()) return;
    c->session.on_peer_message(m, now);
    drive(*c, now);
    after_event();
    return;
  }
  if (s_.role != Role::Backup || mode() != Mode::Duplex) return;
  Conn* known = find(m.key);
  if (known && known->session.finished()) return;
  bool starts = m.value == 0 && (m.type == peer::Type::Reply || m.type == peer::Type::Close);
  if (!known && !starts) {
    // The connection ended here first (a client reset reaches both nodes; frames the primary had
    // already queued follow): nothing to keep. A new connection's stream starts at offset 0
    // (a Close at 0: the primary refused it, or closed it before any reply).
    log::debug({.event = "peer_late", .conn = m.key}, "peer: {} for a connection that ended: {}",
               static_cast<int>(m.type), m.key.to_string());
    return;
  }
  Conn& c = known ? *known : conn_for(m.key, now);
  c.session.on_peer_message(m, now);
  if (c.session.ack_pending()) {
    ack_dirty_.insert(m.key);
  } else {
    ack_dirty_.erase(m.key);
  }
  drive(c, now);
  after_event();
}

void MessageLayer::flush() {
  for (const auto& key : ack_dirty_) {
    Conn* c = find(key);
    if (c) c->session.send_ack();
  }
  ack_dirty_.clear();
}

// At most this many connections are closed per sweep: a slowloris attack makes hundreds due in
// the same second, and closing them all at once (error replies, replication, FINs, the packets
// that follow on both nodes) is a burst of work on the one thread that also sends heartbeats. The
// rest are closed in the next sweeps (deadlines are "at least").
constexpr size_t kMaxSweepActions = 128;

void MessageLayer::sweep() {
  auto now = Clock::now();
  std::vector<std::pair<ConnKey, Session::Quiet>> due;
  for (auto& [key, cp] : conns_) {
    auto q = cp->session.quiet(now);
    if (q != Session::Quiet::Busy) due.emplace_back(key, q);
    if (due.size() == kMaxSweepActions) break;
  }
  for (const auto& [key, q] : due) {
    Conn* c = find(key);
    if (!c || c->session.finished()) continue;
    Session& s = c->session;
    switch (q) {
      case Session::Quiet::Idle:
        log::debug({.event = "timeout", .conn = key, .reason = "idle"}, "message: {} idle; closing",
                   key.to_string());
        s.close_idle(now);
        break;
      case Session::Quiet::SlowHead:
      case Session::Quiet::SlowBody: {
        bool head = q == Session::Quiet::SlowHead;
        ++(head ? counters_.head_timeouts : counters_.body_timeouts);
        log::debug({.event = "timeout", .conn = key, .reason = head ? "slow head" : "slow body"},
                   "message: {}: request {} too slow; closing", key.to_string(),
                   head ? "head" : "body");
        s.time_out(now);
        break;
      }
      case Session::Quiet::SlowRead:
        ++counters_.send_timeouts;
        log::debug({.event = "timeout", .conn = key, .reason = "client reads nothing"},
                   "message: {}: the client reads nothing we send; resetting", key.to_string());
        s.send_timed_out();
        break;
      case Session::Quiet::CloseExpired:
        ++counters_.close_timeouts;
        log::debug({.event = "timeout", .conn = key, .reason = "close too long"},
                   "message: {}: closing took too long; resetting", key.to_string());
        s.close_expired();
        break;
      case Session::Quiet::Abandoned:
        s.abandon();
        break;
      case Session::Quiet::Busy:
        break;
    }
    if (!s.finished()) drive(*c, now);
  }
  after_event();
}

// Runs `fn` on every session still open, then writes what each produced. Keys first: a session
// may finish inside, and finished ones are destroyed only by after_event().
template <typename Fn>
void MessageLayer::for_each_open(Fn&& fn) {
  auto now = Clock::now();
  std::vector<ConnKey> keys;
  keys.reserve(conns_.size());
  for (auto& [k, c] : conns_) keys.push_back(k);
  for (auto& k : keys) {
    Conn* c = find(k);
    if (!c || c->session.finished()) continue;
    if (fn(*c, now)) drive(*c, now);
  }
  after_event();
}

void MessageLayer::take_over() {
  ack_dirty_.clear();
  for_each_open([](Conn& c, TimePoint now) {
    if (!c.fd) return false;  // a replica never accepted here: nothing to serve
    c.session.take_over(now);
    return true;
  });
}

void MessageLayer::peer_lost() {
  for_each_open([](Conn& c, TimePoint) {
    c.session.peer_lost();
    return true;
  });
}

void MessageLayer::mark_unprotected() {
  for_each_open([this](Conn& c, TimePoint) {
    c.session.mark_unprotected();
    ack_dirty_.erase(c.session.key());
    return true;  // bytes that waited for a ReplyAck may go now
  });
}

// The session's view is not enough: reply bytes it wrote may still be in the kernel (unsent, or
// sent but not acknowledged: the packet layer may not even have seen them yet). The kernel's own
// counters say when its socket is quiet; the next request, if it came, is copied (MSG_PEEK) for
// the peer and left for the restarted session to read.
std::vector<MessageLayer::Handover> MessageLayer::ready_for_handover(Clock::duration pause) {
  constexpr int kMaxUnread = 64 * 1024;
  std::vector<Handover> out;
  auto now = Clock::now();
  for (auto& [key, c] : conns_) {
    if (!c->fd || !c->session.holding_for_handover()) continue;
    int unacked = 0, unread = 0;
    bool quiet = ::ioctl(c->fd.get(), SIOCOUTQ, &unacked) == 0 && unacked == 0 &&
                 ::ioctl(c->fd.get(), SIOCINQ, &unread) == 0;
    if (quiet && unread > kMaxUnread) {
      // A large upload has begun: holding it would only stall it. Served alone, and tried again
      // at the boundary after it.
      if (c->session.pause_expired(now, Clock::duration::zero())) update_interest(*c);
      continue;
    }
    if (quiet) {
      Handover h{key, c->session.client_next(), std::vector<uint8_t>(static_cast<size_t>(unread))};
      ssize_t n = unread > 0 ? ::recv(c->fd.get(), h.unread.data(), h.unread.size(),
                                      MSG_PEEK | MSG_DONTWAIT)
                             : 0;
      if (n == unread) {
        out.push_back(std::move(h));
        continue;
      }
    }
    if (c->session.pause_expired(now, pause)) update_interest(*c);  // reads again
  }
  return out;
}

void MessageLayer::protect_again(const ConnKey& key) {
  Conn* c = find(key);
  if (!c || c->session.finished()) return;
  auto now = Clock::now();
  c->session.protect_again(now);
  drive(*c, now);
  after_event();
}

void MessageLayer::adoption_refused(const ConnKey& key) {
  Conn* c = find(key);
  if (!c || c->session.finished()) return;
  auto now = Clock::now();
  c->session.adoption_refused(now);
  ack_dirty_.erase(key);
  drive(*c, now);
  after_event();
}

void MessageLayer::discard(const ConnKey& key) {
  Conn* c = find(key);
  if (!c) return;
  c->session.discard();
  after_event();  // destroyed now: the adopted connection is accepted under the same key
}

MessageLayer::ReplicationLag MessageLayer::replication_lag(TimePoint now) const {
  ReplicationLag lag;
  for (const auto& [k, c] : conns_) {
    lag.bytes += c->session.reply_unacked();
    if (auto since = c->session.unacked_since()) lag.oldest = std::max(lag.oldest, now - *since);
  }
  return lag;
}

size_t MessageLayer::unprotected_connections() const {
  return static_cast<size_t>(std::count_if(
      conns_.begin(), conns_.end(), [](const auto& e) { return e.second->session.unprotected(); }));
}

// ---------------------------------------------------------------------------------------------
// Syscalls. After every input the session gets, drive() writes what it produced, so the next
// input sees the same state as if the writes had happened inside the handler.

void MessageLayer::read_client(Conn& c, TimePoint now) {
  Session& s = c.session;
  for (int rounds = 0; rounds < 16 && !s.client_eof() && !s.finished(); ++rounds) {
    if (!s.may_read_client()) return;  // the request cache is full: update_interest() pauses it
    ssize_t n = ::read(c.fd.get(), buf_.data(), s.client_read_budget(buf_.size()));
    if (n > 0) {
      counters_.request_bytes += static_cast<uint64_t>(n);
      s.on_client_bytes({buf_.data(), static_cast<size_t>(n)}, now);
      drive(c, now);
      continue;
    }
    if (n == 0) {
      s.on_client_eof(now);
      drive(c, now);
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    log::debug({.event = "client_reset", .conn = s.key(), .reason = std::strerror(errno)},
               "message: {} reset by client", s.key().to_string());
    s.on_client_error();
    return;
  }
}

void MessageLayer::read_upstream(Conn& c, TimePoint now) {
  Session& s = c.session;
  for (int rounds = 0; rounds < 16 && c.up && !s.finished(); ++rounds) {
    size_t want = std::min(buf_.size(), s.server_read_budget());
    if (want == 0) return;
    ssize_t n = ::read(c.up.get(), buf_.data(), want);
    if (n > 0) {
      s.on_server_bytes({buf_.data(), static_cast<size_t>(n)}, now);
    } else if (n == 0) {
      s.on_server_eof(false, now);
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      return;
    } else {
      s.on_server_eof(true, now);
    }
    drive(c, now);
    if (n <= 0) return;
  }
}

void MessageLayer::drive(Conn& c, TimePoint now) {
  write_upstream(c, now);  // first: a failed write ends the upstream, which may close the client
  write_client(c, now);
  if (!c.session.finished()) update_interest(c);
}

void MessageLayer::write_client(Conn& c, TimePoint now) {
  Session& s = c.session;
  if (!c.fd || s.finished()) return;
  for (auto out = s.client_output(); !out.empty(); out = s.client_output()) {
    ssize_t n = ::send(c.fd.get(), out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      counters_.reply_bytes += static_cast<uint64_t>(n);
      s.on_client_written(static_cast<size_t>(n), now);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      s.on_client_blocked(now);
      break;
    }
    log::debug({.event = "client_reset", .conn = s.key(), .reason = std::strerror(errno)},
               "message: {} write: {}", s.key().to_string(), std::strerror(errno));
    s.on_client_error();
    return;
  }
  if (s.wants_fin()) {
    ::shutdown(c.fd.get(), SHUT_WR);
    s.on_fin_sent(now);
  }
}

void MessageLayer::write_upstream(Conn& c, TimePoint now) {
  Session& s = c.session;
  if (!c.up || s.finished()) return;
  for (auto out = s.server_output(); !out.empty(); out = s.server_output()) {
    ssize_t n = ::send(c.up.get(), out.data(), out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      s.on_server_written(static_cast<size_t>(n), now);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    s.on_server_eof(true, now);
    return;
  }
}

// The one place epoll interest is computed.
void MessageLayer::update_interest(Conn& c) {
  Session& s = c.session;
  if (c.fd) {
    // Every connection left without read interest here must be woken by after_event().
    bool full = s.blocked_by_cache();
    if (full && !s.client_eof() && cache_.pause(s.key()))
      log::warn({.event = "cache_full", .conn = s.key()},
                "message: request cache full ({} bytes): pausing reads of {}", cache_.bytes(),
                s.key().to_string());
    bool budget = s.budget_blocked();
    if (budget && !c.budget_paused) ++counters_.budget_pauses;
    c.budget_paused = budget;
    uint32_t ev = s.wants_client_read() ? static_cast<uint32_t>(EPOLLIN) : 0u;
    if (s.has_client_output()) ev |= EPOLLOUT;
    loop_.modify(c.fd.get(), ev);
  }
  if (c.up) {
    uint32_t ev = 0;
    if (s.wants_server_write()) ev |= EPOLLOUT;
    if (s.wants_server_read()) ev |= EPOLLIN;
    loop_.modify(c.up.get(), ev);
  }
}

// Deferred destruction, then the readers a smaller cache lets go on (DESIGN.md section 3, flow
// control: the backup stops reading while its request cache is full).
void MessageLayer::after_event() {
  for (const auto& key : finished_) {
    auto it = conns_.find(key);
    if (it == conns_.end()) continue;
    Conn& c = *it->second;
    if (c.fd) {
      if (c.session.reset()) {
        linger l{1, 0};
        ::setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      }
      loop_.remove(c.fd.get());
    }
    if (c.up) loop_.remove(c.up.get());
    if (c.counted) {
      auto src = per_source_.find(key.ip.v);
      if (src != per_source_.end() && --src->second == 0) per_source_.erase(src);
    }
    ack_dirty_.erase(key);
    conns_.erase(it);
  }
  finished_.clear();
  for (const auto& key : cache_.take_resumable()) {
    if (Conn* c = find(key)) update_interest(*c);
  }
}

// ---------------------------------------------------------------------------------------------
// SessionHost.

bool MessageLayer::open_server(const ConnKey& key) {
  Conn* c = find(key);
  if (!c) return false;
  c->up.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in a = sys::to_sockaddr(s_.server);
  if (!c->up || (::connect(c->up.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 &&
                 errno != EINPROGRESS)) {
    log::error({.event = "server_error", .conn = key, .reason = std::strerror(errno)},
               "message: cannot connect to server {}: {}", s_.server.to_string(),
               std::strerror(errno));
    c->up.reset();
    return false;
  }
  int one = 1;
  ::setsockopt(c->up.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  loop_.add(c->up.get(), EPOLLOUT | EPOLLIN,
            [this, key](uint32_t ev) { on_upstream_event(key, ev); });
  return true;
}

void MessageLayer::close_server(const ConnKey& key) {
  Conn* c = find(key);
  if (!c || !c->up) return;
  loop_.remove(c->up.get());
  c->up.reset();
}

void MessageLayer::finished(const ConnKey& key) {
  finished_.push_back(key);
}

}  // namespace us::message
