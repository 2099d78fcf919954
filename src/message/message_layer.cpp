#include "message/message_layer.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <optional>

#include "http/error_reply.hpp"
#include "message/regeneration.hpp"

namespace us::message {

struct MessageLayer::Conn {
  ConnKey key;
  wire::Endpoint fake;
  sys::Fd fd;
  bool serving = false;  // this node answers (primary, or a backup after a takeover)

  // Client -> server.
  http::RequestFramer reqf;
  uint64_t req_read = 0;
  bool client_eof = false;
  uint64_t expected = 0;  // requests announced to respf
  std::deque<http::RequestInfo> unanswered;
  std::optional<http::FrameError> req_error;
  uint64_t error_index = 0;
  std::string cache;  // backup: request-stream bytes from cache_base on
  uint64_t cache_base = 0;
  std::string held;        // serving: request bytes from `forwarded` on, not yet sent upstream
  uint64_t forwarded = 0;  // request-stream offset sent to the server
  std::optional<uint64_t> skip_before_index;  // after a takeover: requests already answered

  // Upstream (the local web server).
  sys::Fd up;
  bool up_connecting = false;
  std::string up_out;
  http::ResponseFramer respf;
  uint64_t up_origin = 0;  // reply-stream offset of the upstream's first byte
  std::optional<Regeneration> regen;

  // Reply stream to the client.
  uint64_t reply_total = 0;    // produced (serving) or received (mirror)
  uint64_t reply_acked = 0;    // serving in duplex: the backup holds up to here
  uint64_t reply_written = 0;  // into the client socket
  std::string out;             // reply bytes [out_base, reply_total)
  uint64_t out_base = 0;
  uint64_t replies_done = 0;
  PartialReply partial;  // mirror: the reply after the last ReplyEnd
  std::optional<uint64_t> close_at;
  bool close_acked = false;
  bool fin_sent = false;
  bool error_sent = false;

  // Timing (serving only): (request index, when its first byte was read / sent to the server),
  // (reply-stream end, when its request's first byte was read), (Reply end offset, when sent).
  using Clock = std::chrono::steady_clock;
  std::deque<std::pair<uint64_t, Clock::time_point>> req_started, server_started;
  std::deque<std::pair<uint64_t, Clock::time_point>> reply_ends, repl_sent;
  uint64_t stamped = 0, server_stamped = 0;
  Clock::time_point last_active = Clock::now();
};

namespace {
// Pops entries for indices below `index` and returns the time for `index`, if recorded.
std::optional<std::chrono::steady_clock::time_point> take(
    std::deque<std::pair<uint64_t, std::chrono::steady_clock::time_point>>& q, uint64_t index) {
  while (!q.empty() && q.front().first < index) q.pop_front();
  if (q.empty() || q.front().first != index) return std::nullopt;
  auto t = q.front().second;
  q.pop_front();
  return t;
}
}  // namespace

MessageLayer::MessageLayer(sys::EventLoop& loop, Flows& flows, peer::ConnSender& link, Settings s)
    : loop_(loop), flows_(flows), link_(link), s_(std::move(s)), buf_(64 * 1024) {}

MessageLayer::~MessageLayer() = default;

Result<Ok, std::string> MessageLayer::start() {
  listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) return Err{sys::errno_text("socket")};
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(s_.listen.ip.v);
  a.sin_port = htons(s_.listen.port);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("bind " + s_.listen.to_string()).c_str())};
  if (::listen(listener_.get(), 4096) != 0) return Err{sys::errno_text("listen")};
  loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return Ok{};
}

bool MessageLayer::replicating() const {
  return s_.role == Role::Primary && mode() == Mode::Duplex;
}

MessageLayer::Conn& MessageLayer::conn_for(const ConnKey& key) {
  auto& slot = conns_[key];
  if (!slot) {
    slot = std::make_unique<Conn>();
    slot->key = key;
  }
  return *slot;
}

MessageLayer::Conn* MessageLayer::find(const ConnKey& key) {
  auto it = conns_.find(key);
  return it == conns_.end() ? nullptr : it->second.get();
}

void MessageLayer::on_accept() {
  for (;;) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    sys::Fd owned(fd);
    wire::Endpoint fake{wire::Ipv4Addr(ntohl(a.sin_addr.s_addr)), ntohs(a.sin_port)};
    auto known = flows_.key_for(fake);
    if (!known) {
      spdlog::warn("message: accepted {} with no flow; closing", fake.to_string());
      continue;
    }
    if (conns_.size() >= s_.max_connections && !find(*known)) {
      spdlog::warn("message: connection limit {} reached; refusing {}", s_.max_connections,
                   known->to_string());
      continue;
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    Conn& c = conn_for(*known);
    c.fake = fake;
    c.fd = std::move(owned);
    ++counters_.accepted;
    ConnKey key = c.key;
    loop_.add(c.fd.get(), EPOLLIN, [this, key](uint32_t ev) { on_client_event(key, ev); });
    SPDLOG_DEBUG("message: accepted {}", key.to_string());
    bool serve = s_.role == Role::Primary || mode() == Mode::Simplex;
    if (serve && !c.serving) {
      if (s_.role == Role::Backup) {
        take_over_conn(c);
      } else {
        c.serving = true;
      }
    }
    if (!write_client(c)) continue;
    update_interest(c);
  }
}

void MessageLayer::on_client_event(const ConnKey& key, uint32_t events) {
  Conn* c = find(key);
  if (!c) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !read_client(*c)) return;
  if ((events & EPOLLOUT) && !write_client(*c)) return;
  update_interest(*c);
}

bool MessageLayer::cache_full(const Conn& c) const {
  return !c.serving && cache_bytes_ >= s_.cache_limit && !(finishing_ && *finishing_ == c.key);
}

// The backup stops reading client bytes while its request cache is full: what it does not hold it
// does not report (Has), so the primary does not acknowledge it and the client waits (DESIGN.md
// section 3, flow control).
void MessageLayer::resume_readers() {
  if (paused_.empty() || cache_bytes_ >= s_.cache_limit) return;
  for (const auto& key : paused_) {
    if (Conn* c = find(key)) update_interest(*c);
  }
  paused_.clear();
}

bool MessageLayer::read_client(Conn& c) {
  for (int rounds = 0; rounds < 16 && !c.client_eof; ++rounds) {
    // Partial requests alone can fill the cache; none of them could then complete and free it.
    // One connection at a time may finish the request it is in (the cache grows past the limit
    // by at most that request).
    if (cache_full(c) && !finishing_ && c.reqf.partial()) {
      finishing_ = c.key;
      paused_.erase(c.key);
    }
    if (cache_full(c)) return true;  // the caller's update_interest() pauses it
    ssize_t n = ::read(c.fd.get(), buf_.data(), buf_.size());
    if (n > 0) {
      if (!on_client_bytes(c, {buf_.data(), static_cast<size_t>(n)})) return false;
      continue;
    }
    if (n == 0) {
      c.client_eof = true;
      // The FIN is a byte of the client's stream: the backup holds it too.
      flows_.local_has(c.fake, wire::SeqNum(c.key.isn + 1 + static_cast<uint32_t>(c.req_read) + 1));
      maybe_finish(c);
      return write_client(c);
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    SPDLOG_DEBUG("message: {} reset by client", c.key.to_string());
    destroy(c, false);
    return false;
  }
  return true;
}

bool MessageLayer::on_client_bytes(Conn& c, std::span<const uint8_t> data) {
  c.req_read += data.size();
  c.last_active = Conn::Clock::now();
  if (!c.serving) {
    c.cache.append(reinterpret_cast<const char*>(data.data()), data.size());
    cache_bytes_ += data.size();
    flows_.local_has(c.fake, wire::SeqNum(c.key.isn + 1 + static_cast<uint32_t>(c.req_read)));
  } else {
    c.held.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
  if (c.req_error) return true;              // after a bad request nothing more is read as HTTP
  if (c.serving && c.close_at) return true;  // closing: later requests get no reply
  if (c.serving && !c.up && !open_upstream(c)) return false;
  std::vector<http::RequestInfo> done;
  auto r = c.reqf.feed(data, done);
  for (auto& ri : done) {
    // A request answered before it was complete here (an early reply, or one the dead primary
    // answered before this node had all of it) is not waiting for anything.
    if (ri.index >= c.replies_done) c.unanswered.push_back(ri);
    ++counters_.requests;
    if (!c.serving) fault("backup.request_complete");
  }
  expect_new_requests(c);
  uint64_t seen = c.reqf.completed() + (c.reqf.partial() ? 1 : 0);
  if (c.serving) {
    auto now = Conn::Clock::now();
    for (; c.stamped < seen; ++c.stamped) c.req_started.emplace_back(c.stamped, now);
  }
  c.stamped = std::max(c.stamped, seen);
  if (!r) {
    c.req_error = r.error();
    c.error_index = c.reqf.completed();
    ++counters_.bad_requests;
    spdlog::warn("http: client {}: request {}: {}; answering {} and closing", c.key.to_string(),
                 c.error_index, r.error().reason, r.error().status);
  }
  if (!c.serving && c.reqf.partial()) fault("backup.request_partial");
  if (finishing_ && *finishing_ == c.key && !c.reqf.partial()) {
    finishing_.reset();
    update_interest(c);
  }
  trim_cache(c);
  if (c.serving) {
    if (!forward_requests(c)) return false;
    if (c.req_error && !maybe_error_reply(c)) return false;
  }
  return true;
}

// A request reaches the server only once its headers are complete and valid: the server must never
// answer (or refuse) bytes that this node's framer has not accepted, or the two nodes' streams and
// the reply order could differ.
bool MessageLayer::forward_requests(Conn& c) {
  if (c.skip_before_index) {
    // After a takeover: the dead primary answered every request below this index (its reply is
    // replicated here), though this node may still be receiving the tail of one. Their bytes must
    // not reach this node's server: it would run them again and answer what nobody asked.
    std::optional<uint64_t> begin;
    for (const auto& ri : c.unanswered)
      if (ri.index == *c.skip_before_index) begin = ri.begin;
    if (!begin && c.reqf.partial() && c.reqf.partial()->index == *c.skip_before_index)
      begin = c.reqf.partial()->begin;
    uint64_t skip_to = begin.value_or(c.req_read);
    if (skip_to > c.forwarded) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(skip_to - c.forwarded, c.held.size()));
      c.held.erase(0, n);
      c.forwarded += n;
    }
    if (begin) c.skip_before_index.reset();
  }
  uint64_t limit = c.req_read;
  if (c.req_error) {
    limit = c.reqf.partial() ? c.reqf.partial()->begin : c.reqf.offset();
  } else if (c.reqf.partial() && !c.reqf.headers_complete()) {
    limit = c.reqf.partial()->begin;
  }
  if (limit <= c.forwarded) return true;
  size_t n = static_cast<size_t>(std::min<uint64_t>(limit - c.forwarded, c.held.size()));
  c.up_out.append(c.held, 0, n);
  c.held.erase(0, n);
  c.forwarded += n;
  auto now = Conn::Clock::now();
  auto stamp = [&](const http::RequestInfo& ri) {
    if (ri.index >= c.server_stamped && ri.begin < c.forwarded) {
      c.server_started.emplace_back(ri.index, now);
      c.server_stamped = ri.index + 1;
    }
  };
  for (const auto& ri : c.unanswered) stamp(ri);
  if (c.reqf.partial()) stamp(*c.reqf.partial());
  return write_upstream(c);
}

void MessageLayer::expect_new_requests(Conn& c) {
  if (!c.serving) return;
  for (auto& ri : c.unanswered) {
    if (ri.index == c.expected) {
      c.respf.expect(ri.method);
      ++c.expected;
    }
  }
  if (c.reqf.headers_complete() && c.reqf.partial()->index == c.expected) {
    c.respf.expect(c.reqf.partial()->method);
    ++c.expected;
  }
}

bool MessageLayer::open_upstream(Conn& c) {
  c.respf = http::ResponseFramer();
  c.expected = c.replies_done;
  c.up_origin = c.reply_total - (c.regen ? c.regen->expected.length : 0);
  expect_new_requests(c);
  c.up.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(s_.server.ip.v);
  a.sin_port = htons(s_.server.port);
  if (!c.up || (::connect(c.up.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 &&
                errno != EINPROGRESS)) {
    spdlog::error("message: cannot connect to server {}: {}", s_.server.to_string(),
                  std::strerror(errno));
    ++counters_.upstream_errors;
    c.up.reset();
    destroy(c, true);
    return false;
  }
  int one = 1;
  ::setsockopt(c.up.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c.up_connecting = true;
  ConnKey key = c.key;
  loop_.add(c.up.get(), EPOLLOUT | EPOLLIN,
            [this, key](uint32_t ev) { on_upstream_event(key, ev); });
  return true;
}

void MessageLayer::on_upstream_event(const ConnKey& key, uint32_t events) {
  Conn* c = find(key);
  if (!c || !c->up) return;
  if (c->up_connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(c->up.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      spdlog::error("message: server {} for {}: {}", s_.server.to_string(), key.to_string(),
                    std::strerror(err));
      ++counters_.upstream_errors;
      on_upstream_eof(*c, true);
      return;
    }
    c->up_connecting = false;
  }
  if ((events & EPOLLOUT) && !write_upstream(*c)) return;
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && !read_upstream(*c)) return;
  update_interest(*c);
}

bool MessageLayer::write_upstream(Conn& c) {
  if (!c.up || c.up_connecting) return true;
  while (!c.up_out.empty()) {
    ssize_t n = ::send(c.up.get(), c.up_out.data(), c.up_out.size(), MSG_NOSIGNAL);
    if (n > 0) {
      c.up_out.erase(0, static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return on_upstream_eof(c, true);
  }
  update_interest(c);
  return true;
}

bool MessageLayer::read_upstream(Conn& c) {
  for (int rounds = 0; rounds < 16 && c.up; ++rounds) {
    size_t pending = c.reply_total - c.reply_written;
    if (pending >= s_.window) return true;
    size_t want = std::min(buf_.size(), s_.window - pending);
    ssize_t n = ::read(c.up.get(), buf_.data(), want);
    if (n > 0) {
      if (!on_upstream_bytes(c, {buf_.data(), static_cast<size_t>(n)})) return false;
      continue;
    }
    if (n == 0) return on_upstream_eof(c, false);
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    return on_upstream_eof(c, true);
  }
  return true;
}

bool MessageLayer::on_upstream_bytes(Conn& c, std::span<const uint8_t> data) {
  if (replicating()) fault("primary.reply_read");
  uint64_t up_start = c.respf.offset();
  if (!c.respf.in_message() && !data.empty()) {
    if (auto t = take(c.server_started, c.replies_done))
      timing_.server.add(Conn::Clock::now() - *t);
  }
  std::vector<http::ResponseInfo> done;
  auto r = c.respf.feed(data, done);
  if (!r) {
    spdlog::error("http: server reply for {}: {}; resetting the connection", c.key.to_string(),
                  r.error().reason);
    ++counters_.upstream_errors;
    destroy(c, true);
    return false;
  }
  // Emit in pieces so every ReplyEnd follows exactly the bytes of its reply.
  size_t pos = 0;
  auto emit_until = [&](uint64_t up_end) -> bool {
    size_t stop = static_cast<size_t>(std::min<uint64_t>(up_end - up_start, data.size()));
    if (stop <= pos) return true;
    auto piece = data.subspan(pos, stop - pos);
    pos = stop;
    if (c.regen) {
      size_t skip = static_cast<size_t>(std::min<uint64_t>(piece.size(), c.regen->remaining));
      if (!c.regen->consume(piece.first(skip))) {
        ++counters_.regen_mismatch;
        spdlog::error(
            "message: {}: regenerated reply {} differs from the bytes the client may hold ({}); "
            "resetting the connection (I5)",
            c.key.to_string(), c.replies_done, c.regen->mismatch);
        destroy(c, true);
        return false;
      }
      if (c.regen->remaining == 0) {
        spdlog::info("message: {}: reply {} regenerated; first {} bytes verified",
                     c.key.to_string(), c.replies_done, c.regen->expected.length);
        ++counters_.regenerated;
        c.regen.reset();
      }
      piece = piece.subspan(skip);
    }
    return emit_reply(c, piece);
  };
  for (auto& ri : done) {
    if (!emit_until(ri.end)) return false;
    if (!ri.interim && !on_final_reply(c, ri)) return false;
    if (!c.up) return true;  // the connection is closing: the rest is not ours to send
  }
  return emit_until(up_start + data.size());
}

bool MessageLayer::on_final_reply(Conn& c, const http::ResponseInfo& r) {
  if (c.regen) {
    // The regenerated reply ended before covering what the client may have: it differs.
    ++counters_.regen_mismatch;
    spdlog::error("message: {}: regenerated reply {} is shorter than the original; resetting (I5)",
                  c.key.to_string(), c.replies_done);
    destroy(c, true);
    return false;
  }
  uint64_t end = c.up_origin + r.end;
  if (auto t = take(c.req_started, r.index)) c.reply_ends.emplace_back(end, *t);
  settle_request_timing(c);
  c.replies_done = r.index + 1;
  ++counters_.replies;
  while (!c.unanswered.empty() && c.unanswered.front().index <= r.index) c.unanswered.pop_front();
  if (replicating()) link_.send({peer::Type::ReplyEnd, c.key, end, r.index, {}});
  if (!r.keep_alive) {
    start_close(c, end);
    close_upstream(c);
    return write_client(c);
  }
  if (c.req_error && !maybe_error_reply(c)) return false;
  maybe_finish(c);
  return true;
}

bool MessageLayer::emit_reply(Conn& c, std::span<const uint8_t> bytes) {
  if (bytes.empty()) return true;
  if (c.out.empty()) c.out_base = c.reply_total;
  c.out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  uint64_t offset = c.reply_total;
  c.reply_total += bytes.size();
  if (replicating()) {
    link_.send({peer::Type::Reply, c.key, offset, 0, bytes});
    c.repl_sent.emplace_back(c.reply_total, Conn::Clock::now());
  } else {
    c.reply_acked = c.reply_total;
  }
  return write_client(c);
}

// A bad request gets its error reply once every earlier request has its reply, so both nodes put
// the same bytes at the same place in the stream.
bool MessageLayer::maybe_error_reply(Conn& c) {
  if (!c.req_error || c.error_sent || c.close_at || c.replies_done != c.error_index) return true;
  c.error_sent = true;
  close_upstream(c);
  std::string reply = http::error_reply(c.req_error->status);
  uint64_t begin = c.reply_total;
  if (!emit_reply(c, {reinterpret_cast<const uint8_t*>(reply.data()), reply.size()})) return false;
  c.replies_done = c.error_index + 1;
  if (replicating())
    link_.send({peer::Type::ReplyEnd, c.key, begin + reply.size(), c.error_index, {}});
  start_close(c, c.reply_total);
  return write_client(c);
}

bool MessageLayer::on_upstream_eof(Conn& c, bool error) {
  std::vector<http::ResponseInfo> done;
  bool mid_reply = c.respf.in_message();
  auto r = c.respf.finish(done);
  for (auto& ri : done) {
    if (!ri.interim && !on_final_reply(c, ri)) return false;
  }
  close_upstream(c);
  if (c.close_at) return write_client(c);
  if (!r && mid_reply) {
    spdlog::error("message: {}: server closed in the middle of reply {}; resetting (I5)",
                  c.key.to_string(), c.replies_done);
    ++counters_.upstream_errors;
    destroy(c, true);
    return false;
  }
  bool outstanding = !c.unanswered.empty() || c.reqf.partial().has_value();
  if (outstanding || error) {
    spdlog::warn("message: {}: server closed with {} request(s) unanswered; closing",
                 c.key.to_string(), c.unanswered.size());
    start_close(c, c.reply_total);
  }
  return write_client(c);
}

void MessageLayer::maybe_finish(Conn& c) {
  if (!c.serving || !c.client_eof || c.close_at) return;
  if (!c.unanswered.empty() || c.respf.in_message()) return;
  start_close(c, c.reply_total);
}

void MessageLayer::start_close(Conn& c, uint64_t offset) {
  if (c.close_at) return;
  c.close_at = offset;
  if (replicating()) {
    link_.send({peer::Type::Close, c.key, offset, 0, {}});
  } else {
    c.close_acked = true;
  }
}

// A request's time ends when the last byte of its reply is in the client socket; the reply may have
// been written before its end was framed, so this runs after both.
void MessageLayer::settle_request_timing(Conn& c) {
  if (c.reply_ends.empty() || c.reply_written < c.reply_ends.front().first) return;
  auto now = Conn::Clock::now();
  while (!c.reply_ends.empty() && c.reply_written >= c.reply_ends.front().first) {
    timing_.request.add(now - c.reply_ends.front().second);
    c.reply_ends.pop_front();
  }
}

bool MessageLayer::write_client(Conn& c) {
  if (!c.fd) return true;
  uint64_t limit = c.serving ? std::min(c.reply_acked, c.reply_total) : c.reply_total;
  while (c.reply_written < limit) {
    size_t from = static_cast<size_t>(c.reply_written - c.out_base);
    ssize_t n = ::send(c.fd.get(), c.out.data() + from,
                       static_cast<size_t>(limit - c.reply_written), MSG_NOSIGNAL);
    if (n > 0) {
      c.reply_written += static_cast<uint64_t>(n);
      c.last_active = Conn::Clock::now();
      if (c.serving && replicating()) fault("primary.reply_written");
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    SPDLOG_DEBUG("message: {} write: {}", c.key.to_string(), std::strerror(errno));
    destroy(c, false);
    return false;
  }
  settle_request_timing(c);
  size_t consumed = static_cast<size_t>(c.reply_written - c.out_base);
  if (consumed == c.out.size() || consumed > (1u << 20)) {
    c.out.erase(0, consumed);
    c.out_base = c.reply_written;
  }
  bool close_ok = c.serving ? c.close_acked : true;
  if (c.close_at && close_ok && !c.fin_sent && c.reply_written >= *c.close_at) {
    ::shutdown(c.fd.get(), SHUT_WR);
    c.fin_sent = true;
    c.last_active = Conn::Clock::now();
  }
  if (c.fin_sent && c.client_eof) {
    destroy(c, false);
    return false;
  }
  return true;
}

void MessageLayer::trim_cache(Conn& c) {
  if (c.serving) return;
  while (!c.unanswered.empty() && c.unanswered.front().index < c.replies_done)
    c.unanswered.pop_front();
  uint64_t keep_from;
  if (!c.unanswered.empty()) {
    keep_from = c.unanswered.front().begin;
  } else if (c.reqf.partial()) {
    keep_from = c.reqf.partial()->begin;
  } else {
    keep_from = c.reqf.offset();
  }
  if (keep_from > c.cache_base) {
    size_t drop = static_cast<size_t>(std::min<uint64_t>(keep_from - c.cache_base, c.cache.size()));
    c.cache.erase(0, drop);
    c.cache_base += drop;
    cache_bytes_ -= drop;
    resume_readers();
  }
}

void MessageLayer::on_peer_message(const peer::ConnMessage& m) {
  if (m.type == peer::Type::ReplyAck) {
    Conn* c = find(m.key);
    if (!c) return;
    if (m.value > c->reply_total + 1) {
      ++counters_.protocol_errors;
      spdlog::error("peer: ReplyAck beyond the reply stream for {}", m.key.to_string());
      return;
    }
    if (m.value > c->reply_written && std::min(m.value, c->reply_total) > c->reply_written)
      fault("primary.reply_acked");
    c->reply_acked = std::max(c->reply_acked, std::min(m.value, c->reply_total));
    auto now = Conn::Clock::now();
    while (!c->repl_sent.empty() && c->repl_sent.front().first <= m.value) {
      timing_.replication.add(now - c->repl_sent.front().second);
      c->repl_sent.pop_front();
    }
    if (c->close_at && m.value > *c->close_at) c->close_acked = true;
    if (write_client(*c)) update_interest(*c);
    return;
  }
  if (s_.role != Role::Backup || mode() != Mode::Duplex) return;
  Conn* known = find(m.key);
  if (!known && !(m.type == peer::Type::Reply && m.value == 0)) {
    // The connection ended here first (a client reset reaches both nodes; frames the primary had
    // already queued follow): nothing to keep. A new connection's stream starts at offset 0.
    SPDLOG_DEBUG("peer: {} for a connection that ended: {}", static_cast<int>(m.type),
                 m.key.to_string());
    return;
  }
  Conn& c = known ? *known : conn_for(m.key);
  switch (m.type) {
    case peer::Type::Reply: {
      if (m.value > c.reply_total) {
        ++counters_.protocol_errors;
        spdlog::error("peer: gap in the reply stream of {} ({} > {})", m.key.to_string(), m.value,
                      c.reply_total);
        return;
      }
      uint64_t skip = c.reply_total - m.value;
      if (skip >= m.data.size()) return;
      auto bytes = m.data.subspan(static_cast<size_t>(skip));
      if (c.out.empty()) c.out_base = c.reply_total;
      c.out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      c.reply_total += bytes.size();
      c.partial.add(bytes);
      ack_dirty_.insert(m.key);
      fault("backup.reply_received");
      break;
    }
    case peer::Type::ReplyEnd:
      c.replies_done = std::max(c.replies_done, m.index + 1);
      c.partial = PartialReply{};
      trim_cache(c);
      return;
    case peer::Type::Close:
      // Acknowledged at once: the mirror may finish and go away before the next flush().
      c.close_at = m.value;
      link_.send({peer::Type::ReplyAck, m.key, m.value + 1, 0, {}});
      ack_dirty_.erase(m.key);
      break;
    case peer::Type::Abort:
      destroy(c, true);
      return;
    default:
      return;
  }
  if (write_client(c)) update_interest(c);
}

void MessageLayer::flush() {
  for (const auto& key : ack_dirty_) {
    Conn* c = find(key);
    if (!c) continue;
    uint64_t v = c->reply_total;
    if (c->close_at && c->reply_total >= *c->close_at) v = *c->close_at + 1;
    link_.send({peer::Type::ReplyAck, key, v, 0, {}});
  }
  ack_dirty_.clear();
}

void MessageLayer::sweep() {
  auto now = Conn::Clock::now();
  std::vector<ConnKey> idle, gone;
  for (auto& [key, cp] : conns_) {
    Conn& c = *cp;
    auto quiet = now - c.last_active;
    if (!c.fd || c.fin_sent) {
      // A replica whose connection this node never accepted, or a client that never answered our
      // FIN: nothing more will happen on it.
      if (quiet > s_.linger) gone.push_back(key);
    } else if (c.serving && !c.close_at && c.unanswered.empty() && !c.reqf.partial() &&
               !c.respf.in_message() && c.reply_written == c.reply_total &&
               quiet > s_.idle_timeout) {
      idle.push_back(key);
    }
  }
  for (const auto& key : idle) {
    if (Conn* c = find(key)) {
      SPDLOG_DEBUG("message: {} idle; closing", key.to_string());
      start_close(*c, c->reply_total);
      if (write_client(*c)) update_interest(*c);
    }
  }
  for (const auto& key : gone) {
    if (Conn* c = find(key)) destroy(*c, false);
  }
}

void MessageLayer::take_over() {
  ack_dirty_.clear();
  std::vector<ConnKey> keys;
  for (auto& [k, c] : conns_) keys.push_back(k);
  for (auto& k : keys) {
    Conn* c = find(k);
    if (c && c->fd) take_over_conn(*c);
  }
}

void MessageLayer::take_over_conn(Conn& c) {
  c.serving = true;
  c.reply_acked = c.reply_total;
  if (c.close_at) {
    c.close_acked = true;
    if (write_client(c)) update_interest(c);
    return;
  }
  trim_cache(c);
  if (c.partial.length > 0) {
    c.regen.emplace();
    c.regen->expected = std::move(c.partial);
    c.regen->remaining = c.regen->expected.length;
    c.partial = PartialReply{};
  }
  bool partial_pending = c.reqf.partial() && c.reqf.partial()->index >= c.replies_done;
  bool to_server = !c.unanswered.empty() || (partial_pending && !c.req_error);
  spdlog::info(
      "message: {}: taking over: {} replies done, {} request(s) pending, {} reply bytes held",
      c.key.to_string(), c.replies_done, c.unanswered.size() + (partial_pending ? 1 : 0),
      c.regen ? c.regen->expected.length : 0);
  // From here on this node serves: the cached request bytes become the bytes still to forward
  // (`held` always starts at stream offset `forwarded`).
  c.skip_before_index = c.replies_done;
  cache_bytes_ -= c.cache.size();
  c.held = std::move(c.cache);
  c.forwarded = c.cache_base;
  c.cache.clear();
  if (to_server && (!open_upstream(c) || !forward_requests(c))) return;
  if (c.req_error && !maybe_error_reply(c)) return;
  maybe_finish(c);
  if (write_client(c)) update_interest(c);
}

void MessageLayer::peer_lost() {
  std::vector<ConnKey> keys;
  for (auto& [k, c] : conns_) keys.push_back(k);
  for (auto& k : keys) {
    Conn* c = find(k);
    if (!c) continue;
    c->reply_acked = c->reply_total;
    c->repl_sent.clear();
    if (c->close_at) c->close_acked = true;
    if (write_client(*c)) update_interest(*c);
  }
}

void MessageLayer::close_upstream(Conn& c) {
  if (!c.up) return;
  loop_.remove(c.up.get());
  c.up.reset();
  c.up_connecting = false;
  c.up_out.clear();
}

void MessageLayer::destroy(Conn& c, bool reset) {
  if (c.fd) {
    if (reset) {
      linger l{1, 0};
      ::setsockopt(c.fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
      ++counters_.aborted;
      if (replicating()) link_.send({peer::Type::Abort, c.key, 0, 0, {}});
    }
    loop_.remove(c.fd.get());
  }
  close_upstream(c);
  ack_dirty_.erase(c.key);
  paused_.erase(c.key);
  if (finishing_ && *finishing_ == c.key) finishing_.reset();
  cache_bytes_ -= c.cache.size();
  conns_.erase(c.key);  // destroys c
  resume_readers();
}

void MessageLayer::update_interest(Conn& c) {
  if (c.fd) {
    bool full = cache_full(c);
    // Every connection left without read interest here must be woken by resume_readers().
    if (full && !c.client_eof && paused_.insert(c.key).second)
      spdlog::warn("message: request cache full ({} bytes): pausing reads of {}", cache_bytes_,
                   c.key.to_string());
    uint32_t ev = c.client_eof || full ? 0u : static_cast<uint32_t>(EPOLLIN);
    uint64_t limit = c.serving ? std::min(c.reply_acked, c.reply_total) : c.reply_total;
    if (c.reply_written < limit) ev |= EPOLLOUT;
    loop_.modify(c.fd.get(), ev);
  }
  if (c.up) {
    uint32_t ev = 0;
    if (c.up_connecting || !c.up_out.empty()) ev |= EPOLLOUT;
    if (c.reply_total - c.reply_written < s_.window) ev |= EPOLLIN;
    loop_.modify(c.up.get(), ev);
  }
}

}  // namespace us::message
