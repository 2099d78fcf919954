#include "message/session.hpp"

#include <algorithm>
#include <vector>

#include "core/log.hpp"
#include "http/error_reply.hpp"
#include "http/head_edit.hpp"

namespace us::message {
namespace {

// Pops entries for indices below `index` and returns the time for `index`, if recorded.
std::optional<TimePoint> take(std::deque<std::pair<uint64_t, TimePoint>>& q, uint64_t index) {
  while (!q.empty() && q.front().first < index) q.pop_front();
  if (q.empty() || q.front().first != index) return std::nullopt;
  auto t = q.front().second;
  q.pop_front();
  return t;
}

std::span<const uint8_t> bytes_of(const std::string& s, size_t from, size_t n) {
  return {reinterpret_cast<const uint8_t*>(s.data()) + from, n};
}

}  // namespace

Session::Session(const ConnKey& key, SessionContext& ctx, TimePoint now)
    : key_(key), ctx_(ctx), client_start_(key.isn + 1), last_active_(now), partial_began_(now) {
  client_.framer = new_framer();
}

http::RequestFramer Session::new_framer() const {
  return http::RequestFramer(http::RequestLimits{ctx_.settings.max_body, ctx_.identity.strip()});
}

Mode Session::effective_mode() const {
  if (unprotected_) return Mode::Simplex;
  const auto& s = ctx_.settings;
  return s.mode ? s.mode() : Mode::Starting;
}

bool Session::replicating() const {
  return ctx_.settings.role == Role::Primary && effective_mode() == Mode::Duplex;
}

void Session::fault(std::string_view point) const {
  if (ctx_.settings.fault) ctx_.settings.fault(point);
}

// ---------------------------------------------------------------------------------------------
// Client side.

void Session::on_accepted(const wire::Endpoint& fake, TimePoint now) {
  client_.fake = fake;
  client_.accepted = true;
  if (auto start = ctx_.flows.stream_start(fake)) client_start_ = *start;
  const auto& s = ctx_.settings;
  bool serve = s.role == Role::Primary || effective_mode() == Mode::Simplex;
  if (serve && !serving_) {
    if (s.role == Role::Backup) {
      serve_alone(now);  // a connection the dead primary knew, accepted only now
    } else {
      serving_ = true;
    }
  }
}

// A connection that discards keeps nothing, so a full cache has no reason to pause it; pausing
// it would also close the client's window on bytes nobody needs.
bool Session::blocked_by_cache() const {
  return !serving_ && !discarding() && ctx_.cache.full_for(key_);
}

// Only what may be forwarded counts: the head of the request in progress must be read whole
// before anything of it can go (the framer bounds it at kMaxHeaderBytes).
bool Session::upstream_full() const {
  return serving_ && !discarding() && up_.out.size() >= ctx_.settings.request_buffer;
}

// Only a connection that waits for its own server pauses: it reads again as that server takes
// its bytes, whatever other clients do, so no request ever waits on another connection.
bool Session::budget_blocked() const {
  return serving_ && !discarding() && !up_.out.empty() && ctx_.budget.over();
}

// Once the budget is spent, a connection with nothing waiting still reads (its request may be
// the one the server needs whole before it answers), but a little at a time, so thousands of
// them cannot each add a full read to the node's total.
size_t Session::client_read_budget(size_t max) const {
  constexpr size_t kSmallRead = 4096;
  bool small = serving_ && !discarding() && ctx_.budget.over();
  return small ? std::min(max, kSmallRead) : max;
}

bool Session::may_read_client() {
  if (holding_for_handover() || upstream_full() || budget_blocked()) return false;
  if (!serving_ && !discarding())
    ctx_.cache.offer_finishing(key_, client_.framer.partial().has_value());
  return !blocked_by_cache();
}

bool Session::wants_client_read() const {
  return client_.accepted && !finished() && !client_.eof && !blocked_by_cache() &&
         !upstream_full() && !budget_blocked() && !holding_for_handover();
}

void Session::on_client_bytes(std::span<const uint8_t> data, TimePoint now) {
  if (finished()) return;
  auto& c = client_;
  c.read += data.size();
  last_active_ = now;
  held_since_.reset();  // a new request: the next boundary holds again
  hold_over_ = false;
  // The backup holds what it read whether it keeps it or not (I1): the client's window stays
  // open, so a discarded stream drains instead of stalling the connection's close.
  if (!serving_) ctx_.flows.local_has(c.fake, client_next());
  if (discarding()) {
    // After a bad request nothing more is read as HTTP; once closing, later requests get no
    // reply. Both nodes decide this from the same bytes and the replicated Close.
    ctx_.counters.discarded_bytes += data.size();
    return;
  }
  if (!serving_) {
    c.cache.append(reinterpret_cast<const char*>(data.data()), data.size());
    ctx_.cache.add(data.size());
  } else {
    c.held.append(reinterpret_cast<const char*>(data.data()), data.size());
  }
  if (serving_ && !up_.open && !open_upstream()) return;
  std::vector<http::RequestInfo> done;
  auto r = c.framer.feed(data, done);
  for (auto& ri : done) {
    // A request answered before it was complete here (an early reply, or one the dead primary
    // answered before this node had all of it) is not waiting for anything.
    if (ri.index >= reply_.replies_done) c.unanswered.push_back(ri);
    ++ctx_.counters.requests;
    if (log::enabled(spdlog::level::debug))
      log::debug({.event = "request", .conn = key_, .request = ri.index},
                 "message: {}: request {} framed ({} bytes)", key_.to_string(), ri.index,
                 ri.end - ri.begin);
    if (!serving_) fault("backup.request_complete");
  }
  expect_new_requests();
  uint64_t seen = c.framer.completed() + (c.framer.partial() ? 1 : 0);
  if (serving_) {
    for (; stamps_.stamped < seen; ++stamps_.stamped)
      stamps_.req_started.emplace_back(stamps_.stamped, now);
  }
  stamps_.stamped = std::max(stamps_.stamped, seen);
  if (auto& p = c.framer.partial(); p && partial_index_ != p->index) {
    partial_index_ = p->index;  // a new request began in these bytes: the head's clock starts
    partial_began_ = now;
  }
  if (!r) {
    c.error = r.error();
    c.error_index = c.framer.completed();
    ++ctx_.counters.bad_requests;
    log::warn({.event = "bad_request",
               .conn = key_,
               .request = c.error_index,
               .reason = r.error().reason},
              "http: client {}: request {}: {}; answering {} and closing", key_.to_string(),
              c.error_index, r.error().reason, r.error().status);
    // The bad request and what follows it are never forwarded or replayed: only the requests
    // before it are kept.
    drop_after(error_begin());
  }
  if (!serving_ && c.framer.partial()) fault("backup.request_partial");
  // A failed request ends too: it must not keep the cache's finishing slot.
  if (!c.framer.partial() || c.error) ctx_.cache.request_ended(key_);
  trim_cache();
  if (serving_) {
    forward_requests(now);
    if (c.error) maybe_error_reply(now);
  }
}

void Session::on_client_eof(TimePoint now) {
  if (finished()) return;
  client_.eof = true;
  // The FIN is a byte of the client's stream: the backup holds it too.
  ctx_.flows.local_has(client_.fake, client_next() + 1);
  maybe_finish(now);
  if (reply_.fin_sent) end(false);
}

void Session::on_client_error() {
  end(false);
}

uint64_t Session::client_limit() const {
  return serving_ ? std::min(reply_.acked, reply_.total) : reply_.total;
}

std::span<const uint8_t> Session::client_output() const {
  uint64_t limit = client_limit();
  if (!client_.accepted || finished() || reply_.written >= limit) return {};
  return bytes_of(reply_.out, static_cast<size_t>(reply_.written - reply_.out_base),
                  static_cast<size_t>(limit - reply_.written));
}

void Session::on_client_written(size_t n, TimePoint now) {
  auto& r = reply_;
  r.written += n;
  last_active_ = now;
  send_since_.reset();  // the client reads: its send deadline starts again at the next EAGAIN
  if (close_since_) close_since_ = now;  // closing, but the client still reads
  if (serving_ && replicating()) fault("primary.reply_written");
  settle_request_timing(now);
  // Written bytes are dropped a window at a time (one copy of at most a window per window
  // written): a client that reads slowly holds at most twice the window here, not a megabyte.
  size_t consumed = static_cast<size_t>(r.written - r.out_base);
  if (consumed == r.out.size() || consumed >= ctx_.settings.window) {
    r.out.erase(0, consumed);
    r.out_base = r.written;
  }
}

// nginx's send_timeout: the clock runs from the last write that went through, so a client that
// opens its window a few bytes at a time (too little for its socket to take more: the adapter's
// TCP_NOTSENT_LOWAT) is as stuck as one that reads nothing, while a slow download keeps writing.
void Session::on_client_blocked(TimePoint now) {
  if (!send_since_ && !client_output().empty()) send_since_ = now;
}

// I2 for the close: a serving node in duplex sends its FIN only once the backup acknowledged the
// Close (ReplyAck one past its offset).
bool Session::wants_fin() const {
  bool close_ok = serving_ ? reply_.close_acked : true;
  return client_.accepted && !finished() && reply_.close_at && close_ok && !reply_.fin_sent &&
         reply_.written >= *reply_.close_at;
}

void Session::on_fin_sent(TimePoint now) {
  reply_.fin_sent = true;
  last_active_ = now;
  close_since_ = now;
  if (client_.eof) end(false);
}

// ---------------------------------------------------------------------------------------------
// Requests to the server.

// A request reaches the server only once its headers are complete and valid: the server must never
// answer (or refuse) bytes that this node's framer has not accepted, or the two nodes' streams and
// the reply order could differ.
void Session::forward_requests(TimePoint now) {
  auto& c = client_;
  if (c.skip_before_index) {
    // After a takeover: the dead primary answered every request below this index (its reply is
    // replicated here), though this node may still be receiving the tail of one. Their bytes must
    // not reach this node's server: it would run them again and answer what nobody asked.
    std::optional<uint64_t> begin;
    for (const auto& ri : c.unanswered)
      if (ri.index == *c.skip_before_index) begin = ri.begin;
    if (!begin && c.framer.partial() && c.framer.partial()->index == *c.skip_before_index)
      begin = c.framer.partial()->begin;
    uint64_t skip_to = begin.value_or(c.read);
    if (skip_to > c.forwarded) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(skip_to - c.forwarded, c.held.size()));
      c.held.erase(0, n);
      c.forwarded += n;
    }
    if (begin) c.skip_before_index.reset();
  }
  uint64_t limit = c.read;
  if (c.error) {
    limit = error_begin();
  } else if (c.framer.partial() && !c.framer.headers_complete()) {
    limit = c.framer.partial()->begin;
  }
  if (limit <= c.forwarded) return;
  if (ctx_.identity.edits_heads()) {
    forward_edited(limit);
  } else {
    size_t n = static_cast<size_t>(std::min<uint64_t>(limit - c.forwarded, c.held.size()));
    up_.out.append(c.held, 0, n);
    c.held.erase(0, n);
    c.forwarded += n;
  }
  account_upstream();
  auto stamp = [&](const http::RequestInfo& ri) {
    if (ri.index >= stamps_.server_stamped && ri.begin < c.forwarded) {
      stamps_.server_started.emplace_back(ri.index, now);
      stamps_.server_stamped = ri.index + 1;
    }
  };
  for (const auto& ri : c.unanswered) stamp(ri);
  if (c.framer.partial()) stamp(*c.framer.partial());
}

// Every head in [forwarded, limit) is complete (forward_requests never stops inside one) and
// belongs to a request not yet answered, or to the one in progress: the framer's view of those
// is where the edits are. Both nodes frame the same stream and start it at the same client seq,
// so the bytes sent upstream are the same on both (request_identity.hpp).
void Session::forward_edited(uint64_t limit) {
  auto& c = client_;
  limit = std::min<uint64_t>(limit, c.forwarded + c.held.size());
  size_t used = 0;  // bytes of `held` consumed
  auto edit = [&](const http::RequestInfo& ri) {
    if (ri.begin < c.forwarded + used || ri.begin >= limit) return;
    if (ri.head_end == 0 || ri.head_end > limit) {
      limit = ri.begin;  // never a head unedited: it waits (unreachable, see above)
      return;
    }
    size_t at = static_cast<size_t>(ri.begin - c.forwarded);
    up_.out.append(c.held, used, at - used);
    std::string fields;
    ctx_.identity.append_fields(key_, client_start_, ri.index, fields);
    std::string_view held(c.held);
    http::append_edited_head(ri, held.substr(at, static_cast<size_t>(ri.head_end - ri.begin)),
                             fields, up_.out);
    used = static_cast<size_t>(ri.head_end - c.forwarded);
  };
  for (const auto& ri : c.unanswered) edit(ri);
  if (const auto& p = c.framer.partial()) edit(*p);
  size_t n = static_cast<size_t>(limit - c.forwarded);
  up_.out.append(c.held, used, n - used);
  c.held.erase(0, n);
  c.forwarded += n;
}

void Session::expect_new_requests() {
  if (!serving_) return;
  for (auto& ri : client_.unanswered) {
    if (ri.index == up_.expected) {
      up_.framer.expect(ri.method);
      ++up_.expected;
    }
  }
  if (client_.framer.headers_complete() && client_.framer.partial()->index == up_.expected) {
    up_.framer.expect(client_.framer.partial()->method);
    ++up_.expected;
  }
}

bool Session::open_upstream() {
  up_.framer = http::ResponseFramer();
  up_.first_index = reply_.replies_done;
  up_.expected = reply_.replies_done;
  up_.origin = reply_.total - (up_.regen ? up_.regen->expected.length : 0);
  expect_new_requests();
  if (!ctx_.host.open_server(key_)) {
    ++ctx_.counters.upstream_errors;
    end(true);
    return false;
  }
  up_.open = true;
  up_.connecting = true;
  ctx_.identity.append_preface(key_, up_.out);
  account_upstream();
  return true;
}

void Session::close_upstream() {
  if (!up_.open) return;
  ctx_.host.close_server(key_);
  up_.open = false;
  up_.connecting = false;
  up_.out.clear();
  account_upstream();
}

void Session::account_upstream() {
  ctx_.budget.update(budgeted_, up_.out.size());
  budgeted_ = up_.out.size();
}

// ---------------------------------------------------------------------------------------------
// Replies from the server.

void Session::on_server_written(size_t n, TimePoint now) {
  up_.out.erase(0, n);
  account_upstream();
  last_active_ = now;  // the body moves: the client is not the one holding it up
}

size_t Session::server_read_budget() const {
  uint64_t pending = reply_.total - reply_.written;
  size_t window = ctx_.settings.window;
  return pending >= window ? 0 : window - static_cast<size_t>(pending);
}

bool Session::wants_server_read() const {
  return up_.open && reply_.total - reply_.written < ctx_.settings.window;
}

std::span<const uint8_t> Session::server_output() const {
  if (!up_.open || up_.connecting) return {};
  return bytes_of(up_.out, 0, up_.out.size());
}

void Session::on_server_bytes(std::span<const uint8_t> data, TimePoint now) {
  if (finished() || !up_.open) return;
  if (replicating()) fault("primary.reply_read");
  uint64_t up_start = up_.framer.offset();
  if (!up_.framer.in_message() && !data.empty()) {
    if (auto t = take(stamps_.server_started, reply_.replies_done))
      ctx_.timing.server.add(now - *t);
  }
  std::vector<http::ResponseInfo> done;
  auto r = up_.framer.feed(data, done);
  to_stream_indices(done);
  if (!r) {
    log::error({.event = "server_error",
                .conn = key_,
                .request = reply_.replies_done,
                .reason = r.error().reason},
               "http: server reply for {}: {}; resetting the connection", key_.to_string(),
               r.error().reason);
    ++ctx_.counters.upstream_errors;
    end(true);
    return;
  }
  // Emit in pieces so every ReplyEnd follows exactly the bytes of its reply.
  size_t pos = 0;
  for (auto& ri : done) {
    emit_until(data, up_start, pos, ri.end, now);
    if (finished()) return;
    if (!ri.interim) on_final_reply(ri, now);
    if (finished() || !up_.open) return;  // closing: the rest is not ours to send
  }
  emit_until(data, up_start, pos, up_start + data.size(), now);
}

// Emits data[pos, up_end - up_start), first checking it against a reply being regenerated.
void Session::emit_until(std::span<const uint8_t> data, uint64_t up_start, size_t& pos,
                         uint64_t up_end, TimePoint now) {
  size_t stop = static_cast<size_t>(std::min<uint64_t>(up_end - up_start, data.size()));
  if (stop <= pos) return;
  auto piece = data.subspan(pos, stop - pos);
  pos = stop;
  if (auto& regen = up_.regen) {
    // DESIGN.md section 3, "Large messages": the client may hold any prefix of what the dead
    // primary sent; the new reply must start with the same bytes, which are not sent again (I5).
    size_t skip = static_cast<size_t>(std::min<uint64_t>(piece.size(), regen->remaining));
    if (!regen->consume(piece.first(skip))) {
      ++ctx_.counters.regen_mismatch;
      log::error({.event = "regen_mismatch", .conn = key_, .request = reply_.replies_done},
                 "message: {}: regenerated reply {} differs from the bytes the client may hold "
                 "({}); resetting the connection (I5)",
                 key_.to_string(), reply_.replies_done, regen->mismatch);
      end(true);
      return;
    }
    if (regen->remaining == 0) {
      log::info({.event = "regenerated", .conn = key_, .request = reply_.replies_done},
                "message: {}: reply {} regenerated; first {} bytes verified", key_.to_string(),
                reply_.replies_done, regen->expected.length);
      ++ctx_.counters.regenerated;
      regen.reset();
    }
    piece = piece.subspan(skip);
  }
  emit_reply(piece, now);
}

void Session::on_final_reply(const http::ResponseInfo& r, TimePoint now) {
  if (up_.regen) {
    // The regenerated reply ended before covering what the client may have: it differs.
    ++ctx_.counters.regen_mismatch;
    log::error({.event = "regen_mismatch", .conn = key_, .request = reply_.replies_done},
               "message: {}: regenerated reply {} is shorter than the original; resetting (I5)",
               key_.to_string(), reply_.replies_done);
    end(true);
    return;
  }
  uint64_t end_offset = up_.origin + r.end;
  if (auto t = take(stamps_.req_started, r.index)) stamps_.reply_ends.emplace_back(end_offset, *t);
  settle_request_timing(now);
  reply_.replies_done = r.index + 1;
  ++ctx_.counters.replies;
  if (log::enabled(spdlog::level::debug))
    log::debug({.event = "reply", .conn = key_, .request = r.index},
               "message: {}: reply {} from the server: {}", key_.to_string(), r.index, r.status);
  auto& unanswered = client_.unanswered;
  while (!unanswered.empty() && unanswered.front().index <= r.index) unanswered.pop_front();
  if (replicating()) ctx_.link.send({peer::Type::ReplyEnd, key_, end_offset, r.index, {}});
  if (!r.keep_alive) {
    start_close(end_offset, now);
    close_upstream();
    return;
  }
  if (client_.error) maybe_error_reply(now);
  if (finished()) return;
  maybe_finish(now);
}

// The framer counts the replies of one server connection from 0; a connection opened after earlier
// replies (a takeover, a server that closed between requests) answers later requests. Without this
// the replies the dead primary sent were counted again: `replies_done` went backwards, answered
// requests stayed "unanswered", and the connection never closed (chaos cycles: CLOSE-WAIT).
void Session::to_stream_indices(std::vector<http::ResponseInfo>& done) const {
  for (auto& ri : done) ri.index += up_.first_index;
}

void Session::emit_reply(std::span<const uint8_t> bytes, TimePoint now) {
  if (bytes.empty()) return;
  auto& r = reply_;
  if (r.out.empty()) r.out_base = r.total;
  r.out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  uint64_t offset = r.total;
  r.total += bytes.size();
  if (replicating()) {
    ctx_.link.send({peer::Type::Reply, key_, offset, 0, bytes});
    stamps_.repl_sent.emplace_back(r.total, now);
  } else {
    r.acked = r.total;
  }
}

// A bad request gets its error reply once every earlier request has its reply, so both nodes put
// the same bytes at the same place in the stream.
void Session::maybe_error_reply(TimePoint now) {
  auto& c = client_;
  if (!c.error || c.error_sent || reply_.close_at || reply_.replies_done != c.error_index) return;
  c.error_sent = true;
  close_upstream();
  std::string reply = http::error_reply(c.error->status);
  // After a takeover the dead primary may have sent part of this very reply (it is deterministic):
  // checked and continued like a regenerated one (I5).
  size_t pos = 0;
  emit_until(bytes_of(reply, 0, reply.size()), 0, pos, reply.size(), now);
  if (finished()) return;
  if (up_.regen) {
    ++ctx_.counters.regen_mismatch;
    log::error({.event = "regen_mismatch", .conn = key_, .request = c.error_index},
               "message: {}: error reply {} is shorter than the reply begun; resetting (I5)",
               key_.to_string(), c.error_index);
    end(true);
    return;
  }
  reply_.replies_done = c.error_index + 1;
  if (replicating()) ctx_.link.send({peer::Type::ReplyEnd, key_, reply_.total, c.error_index, {}});
  start_close(reply_.total, now);
}

void Session::on_server_eof(bool error, TimePoint now) {
  if (finished() || !up_.open) return;
  std::vector<http::ResponseInfo> done;
  bool mid_reply = up_.framer.in_message();
  auto r = up_.framer.finish(done);
  to_stream_indices(done);
  for (auto& ri : done) {
    if (!ri.interim) on_final_reply(ri, now);
    if (finished()) return;
  }
  close_upstream();
  if (reply_.close_at) return;
  if (!r && mid_reply) {
    log::error({.event = "server_error",
                .conn = key_,
                .request = reply_.replies_done,
                .reason = "closed mid-reply"},
               "message: {}: server closed in the middle of reply {}; resetting (I5)",
               key_.to_string(), reply_.replies_done);
    ++ctx_.counters.upstream_errors;
    end(true);
    return;
  }
  bool outstanding = !client_.unanswered.empty() || client_.framer.partial().has_value();
  if (outstanding || error) {
    log::warn({.event = "server_error", .conn = key_, .reason = "closed, requests unanswered"},
              "message: {}: server closed with {} request(s) unanswered; closing", key_.to_string(),
              client_.unanswered.size());
    start_close(reply_.total, now);
  }
}

// ---------------------------------------------------------------------------------------------
// Closing.

void Session::maybe_finish(TimePoint now) {
  if (!serving_ || !client_.eof || reply_.close_at) return;
  if (!client_.unanswered.empty() || up_.framer.in_message()) return;
  start_close(reply_.total, now);
}

void Session::start_close(uint64_t offset, TimePoint now) {
  if (reply_.close_at) return;
  reply_.close_at = offset;
  close_since_ = now;
  client_.held.clear();  // later requests get no reply: their bytes are not kept
  if (replicating()) {
    ctx_.link.send({peer::Type::Close, key_, offset, 0, {}});
  } else {
    reply_.close_acked = true;
  }
}

void Session::end(bool reset, bool tell_peer) {
  if (finished()) return;
  if (client_.accepted && reset && tell_peer) {
    ++ctx_.counters.aborted;
    if (replicating()) ctx_.link.send({peer::Type::Abort, key_, 0, 0, {}});
  }
  close_upstream();
  up_.out.clear();  // nothing more is sent: it leaves the node's request budget
  account_upstream();
  ctx_.cache.drop(client_.cache.size());
  client_.cache.clear();
  ctx_.cache.forget(key_);
  end_ = reset ? End::Reset : End::Closed;
  if (log::enabled(spdlog::level::debug))
    log::debug({.event = "conn_close", .conn = key_, .reason = reset ? "reset" : "closed"},
               "message: {}: {} after {} replies", key_.to_string(), reset ? "reset" : "closed",
               reply_.replies_done);
  ctx_.host.finished(key_);
}

// A request's time ends when the last byte of its reply is in the client socket; the reply may have
// been written before its end was framed, so this runs after both.
void Session::settle_request_timing(TimePoint now) {
  auto& ends = stamps_.reply_ends;
  while (!ends.empty() && reply_.written >= ends.front().first) {
    ctx_.timing.request.add(now - ends.front().second);
    ends.pop_front();
  }
}

// Backup: drops the cached request bytes the replicated replies show answered.
void Session::trim_cache() {
  if (serving_) return;
  auto& c = client_;
  while (!c.unanswered.empty() && c.unanswered.front().index < reply_.replies_done)
    c.unanswered.pop_front();
  uint64_t keep_from;
  if (!c.unanswered.empty()) {
    keep_from = c.unanswered.front().begin;
  } else if (c.framer.partial()) {
    keep_from = c.framer.partial()->begin;
  } else {
    keep_from = c.framer.offset();
  }
  if (keep_from > c.cache_base) {
    size_t drop = static_cast<size_t>(std::min<uint64_t>(keep_from - c.cache_base, c.cache.size()));
    c.cache.erase(0, drop);
    c.cache_base += drop;
    ctx_.cache.drop(drop);
  }
}

// Where the first bad (or timed-out) request begins: nothing from there on is forwarded or kept.
uint64_t Session::error_begin() const {
  const auto& c = client_;
  return c.framer.partial() ? c.framer.partial()->begin : c.framer.offset();
}

// Keeps the held (serving) or cached (backup) request bytes before `offset` only.
void Session::drop_after(uint64_t offset) {
  auto& c = client_;
  auto keep = [offset](uint64_t base, size_t size) {
    return static_cast<size_t>(std::min<uint64_t>(offset > base ? offset - base : 0, size));
  };
  size_t held = keep(c.forwarded, c.held.size());
  size_t cached = keep(c.cache_base, c.cache.size());
  ctx_.counters.discarded_bytes += (c.held.size() - held) + (c.cache.size() - cached);
  c.held.resize(held);
  ctx_.cache.drop(c.cache.size() - cached);
  c.cache.resize(cached);
}

// Backup: the connection is closing; the cache is not needed (a takeover serves nothing more).
void Session::drop_cache() {
  auto& c = client_;
  ctx_.cache.drop(c.cache.size());
  c.cache_base += c.cache.size();
  c.cache.clear();
  ctx_.cache.request_ended(key_);
}

// ---------------------------------------------------------------------------------------------
// The peer.

void Session::on_peer_message(const peer::ConnMessage& m, TimePoint now) {
  if (finished() || unprotected_) return;  // the peer does not know this connection
  auto& r = reply_;
  switch (m.type) {
    case peer::Type::ReplyAck: {
      if (m.value > r.total + 1) {
        ++ctx_.counters.protocol_errors;
        log::error({.event = "protocol_error", .conn = key_},
                   "peer: ReplyAck beyond the reply stream for {}", m.key.to_string());
        return;
      }
      if (m.value > r.written && std::min(m.value, r.total) > r.written)
        fault("primary.reply_acked");
      r.acked = std::max(r.acked, std::min(m.value, r.total));
      auto& sent = stamps_.repl_sent;
      while (!sent.empty() && sent.front().first <= m.value) {
        ctx_.timing.replication.add(now - sent.front().second);
        sent.pop_front();
      }
      // The Close counts as one byte past its offset.
      if (r.close_at && m.value > *r.close_at) r.close_acked = true;
      return;
    }
    case peer::Type::Reply: {
      if (m.value > r.total) {
        ++ctx_.counters.protocol_errors;
        log::error({.event = "protocol_error", .conn = key_},
                   "peer: gap in the reply stream of {} ({} > {})", m.key.to_string(), m.value,
                   r.total);
        return;
      }
      uint64_t skip = r.total - m.value;
      if (skip >= m.data.size()) return;
      auto bytes = m.data.subspan(static_cast<size_t>(skip));
      if (r.out.empty()) r.out_base = r.total;
      r.out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      r.total += bytes.size();
      r.partial.add(bytes);
      r.ack_pending = true;
      fault("backup.reply_received");
      return;
    }
    case peer::Type::ReplyEnd:
      r.replies_done = std::max(r.replies_done, m.index + 1);
      r.partial = PartialReply{};
      trim_cache();
      return;
    case peer::Type::Close:
      // Acknowledged at once: the mirror may finish and go away before the next flush().
      r.close_at = m.value;
      if (!close_since_) close_since_ = now;
      drop_cache();  // no request after the close is answered, here or after a takeover
      ctx_.link.send({peer::Type::ReplyAck, key_, m.value + 1, 0, {}});
      r.ack_pending = false;
      return;
    case peer::Type::Abort:
      ctx_.flows.peer_reset(key_);
      end(true);
      return;
    default:
      return;
  }
}

void Session::send_ack() {
  if (finished()) return;
  uint64_t v = reply_.total;
  if (reply_.close_at && reply_.total >= *reply_.close_at) v = *reply_.close_at + 1;
  ctx_.link.send({peer::Type::ReplyAck, key_, v, 0, {}});
  reply_.ack_pending = false;
}

// Table 2, primary rows: cached requests with no complete replicated reply go to this node's
// server; a reply cut mid-way is regenerated and checked against what the client may hold.
void Session::take_over(TimePoint now) {
  // An unprotected session was this node's alone already; taking it over again would replace
  // its held request bytes with the (empty) cache.
  if (unprotected_) return;
  serve_alone(now);
}

void Session::serve_alone(TimePoint now) {
  if (finished()) return;
  serving_ = true;
  send_since_.reset();  // this node's send deadline starts with its own first refused write
  reply_.ack_pending = false;
  reply_.acked = reply_.total;
  if (reply_.close_at) {
    reply_.close_acked = true;
    return;
  }
  trim_cache();
  auto& c = client_;
  if (reply_.partial.length > 0) {
    up_.regen.emplace();
    up_.regen->expected = std::move(reply_.partial);
    up_.regen->remaining = up_.regen->expected.length;
    reply_.partial = PartialReply{};
  }
  bool partial_pending = c.framer.partial() && c.framer.partial()->index >= reply_.replies_done;
  bool to_server = !c.unanswered.empty() || (partial_pending && !c.error);
  log::info({.event = "conn_takeover", .conn = key_},
            "message: {}: taking over: {} replies done, {} request(s) pending, {} reply bytes "
            "held",
            key_.to_string(), reply_.replies_done, c.unanswered.size() + (partial_pending ? 1 : 0),
            up_.regen ? up_.regen->expected.length : 0);
  // From here on this node serves: the cached request bytes become the bytes still to forward
  // (`held` always starts at stream offset `forwarded`).
  c.skip_before_index = reply_.replies_done;
  ctx_.cache.drop(c.cache.size());
  c.held = std::move(c.cache);
  c.forwarded = c.cache_base;
  c.cache.clear();
  if (to_server) {
    if (!open_upstream()) return;
    forward_requests(now);
  }
  if (c.error) maybe_error_reply(now);
  if (finished()) return;
  maybe_finish(now);
}

void Session::peer_lost() {
  if (finished() || unprotected_) return;
  reply_.acked = reply_.total;
  stamps_.repl_sent.clear();
  if (reply_.close_at) reply_.close_acked = true;
}

void Session::mark_unprotected() {
  if (finished() || unprotected_) return;
  unprotected_ = true;
  handover_wanted_ = true;
  // As in simplex: nothing the peer would acknowledge is waited for, nothing is owed to it.
  reply_.ack_pending = false;
  if (serving_) {
    reply_.acked = reply_.total;
    stamps_.repl_sent.clear();
    if (reply_.close_at) reply_.close_acked = true;
  }
}

bool Session::at_request_boundary() const {
  const auto& c = client_;
  return unprotected_ && serving_ && c.accepted && !finished() && !c.eof && !c.error &&
         c.unanswered.empty() && !c.framer.partial() && c.held.empty() && !reply_.close_at &&
         reply_.written == reply_.total && !up_.framer.in_message() && up_.out.empty() &&
         !up_.regen;
}

bool Session::holding_for_handover() const {
  const auto& s = ctx_.settings;
  Mode node_mode = s.mode ? s.mode() : Mode::Starting;
  return handover_wanted_ && !hold_over_ && node_mode == Mode::Duplex && at_request_boundary();
}

bool Session::pause_expired(TimePoint now, Clock::duration limit) {
  if (!holding_for_handover()) return false;
  if (!held_since_) held_since_ = now;
  if (now - *held_since_ < limit) return false;
  hold_over_ = true;
  return true;
}

void Session::protect_again(TimePoint now) {
  if (!at_request_boundary()) return;
  wire::SeqNum start = client_next();
  wire::Endpoint fake = client_.fake;
  close_upstream();
  client_ = ClientSide{};
  client_.framer = new_framer();
  client_.fake = fake;
  client_.accepted = true;
  up_ = Upstream{};
  account_upstream();
  reply_ = ReplyStream{};
  stamps_ = Stamping{};
  unprotected_ = false;
  handover_wanted_ = false;
  held_since_.reset();
  hold_over_ = false;
  partial_index_.reset();
  close_since_.reset();
  send_since_.reset();
  serving_ = ctx_.settings.role == Role::Primary;
  client_start_ = start;
  last_active_ = now;
}

void Session::adoption_refused(TimePoint now) {
  if (finished() || unprotected_) return;
  if (!serving_) serve_alone(now);
  mark_unprotected();
  handover_wanted_ = false;  // it would be refused again
}

// ---------------------------------------------------------------------------------------------
// The sweep.

Session::Quiet Session::quiet(TimePoint now) const {
  if (finished()) return Quiet::Busy;
  const auto& s = ctx_.settings;
  const auto& c = client_;
  auto quiet_for = now - last_active_;
  // A replica whose connection this node never accepted: nothing more will happen on it.
  if (!c.accepted) return quiet_for > s.linger ? Quiet::Abandoned : Quiet::Busy;
  // Closing: client bytes do not count (they are discarded); our progress does.
  if (close_since_)
    return now - *close_since_ > s.close_timeout ? Quiet::CloseExpired : Quiet::Busy;
  // A client that does not read what we have for it (nginx's send_timeout). Judged by the
  // serving node: it is the one whose writes wait on the client (I2 holds back the rest).
  if (serving_ && send_since_ && has_client_output() && now - *send_since_ > s.send_timeout)
    return Quiet::SlowRead;
  if (!serving_ || c.error) return Quiet::Busy;
  // The client's clocks run only while the client is the one awaited: every earlier request
  // answered, no reply being read, the server keeping up with the body.
  if (const auto& p = c.framer.partial()) {
    if (p->index > reply_.replies_done || up_.framer.in_message() || upstream_full() ||
        budget_blocked())
      return Quiet::Busy;
    if (!c.framer.headers_complete())
      return now - partial_began_ > s.header_timeout ? Quiet::SlowHead : Quiet::Busy;
    return quiet_for > s.body_timeout ? Quiet::SlowBody : Quiet::Busy;
  }
  if (c.unanswered.empty() && !up_.framer.in_message() && reply_.written == reply_.total) {
    // A new connection that never sent a byte gets no longer than a request head would (not
    // one whose streams restarted at a hand-over boundary: it did send).
    bool silent = c.read == 0 && client_start_ == wire::SeqNum(key_.isn + 1);
    auto limit = silent ? std::min<Clock::duration>(s.idle_timeout, s.header_timeout)
                        : Clock::duration(s.idle_timeout);
    if (quiet_for > limit) return Quiet::Idle;
  }
  return Quiet::Busy;
}

void Session::close_idle(TimePoint now) {
  if (!finished()) start_close(reply_.total, now);
}

void Session::abandon() {
  end(false);
}

void Session::time_out(TimePoint now) {
  auto& c = client_;
  if (finished() || reply_.close_at || c.error) return;
  const auto& p = c.framer.partial();
  close_upstream();  // the server may hold the start of a body that will never end
  if (p && p->index == reply_.replies_done) {
    c.error = http::FrameError{408, "request timed out", c.read};
    c.error_index = p->index;
    drop_after(error_begin());
    maybe_error_reply(now);
  } else {
    start_close(reply_.total, now);  // answered already (an early reply): just close
  }
}

void Session::send_timed_out() {
  end(true);
}

void Session::close_expired() {
  // Both nodes keep this deadline; the primary's reset tells the client, the backup's only its
  // kernel, so the backup ends its flow as after an Abort.
  if (ctx_.settings.role == Role::Backup && effective_mode() == Mode::Duplex)
    ctx_.flows.peer_reset(key_);
  end(true, /*tell_peer=*/false);
}

void Session::refuse(TimePoint now) {
  if (finished()) return;
  ++ctx_.counters.refused_per_source;
  start_close(reply_.total, now);
}

void Session::discard() {
  end(true, /*tell_peer=*/false);
}

}  // namespace us::message
