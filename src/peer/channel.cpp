#include "peer/channel.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/rand.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <cstring>

#include "core/log.hpp"
#include "sys/socket_address.hpp"

namespace us::peer {
namespace {
constexpr size_t kMaxFrame =
    2 * 1024 * 1024;  // bounds what an unauthenticated length may make us buffer
constexpr size_t kFlushAt = 256 * 1024;
constexpr std::chrono::milliseconds kConnectTimeout{300};
// From a connection to the peer's Confirm: a LAN round trip or two, with room for a loaded host.
constexpr std::chrono::milliseconds kHandshakeTimeout{2000};

const char* other_role(Role r) {
  return to_string(r == Role::Primary ? Role::Backup : Role::Primary);
}

}  // namespace

Channel::Channel(sys::EventLoop& loop, ChannelSettings s, Events ev)
    : loop_(loop),
      s_(std::move(s)),
      ev_(std::move(ev)),
      hello_auth_(crypto::derive_key(s_.key, "understudy hello v2")) {}

Channel::~Channel() {
  if (fd_) loop_.remove(fd_.get());
  if (listener_) loop_.remove(listener_.get());
}

Result<Ok, std::string> Channel::start() {
  if (s_.role == Role::Primary) {
    listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    int one = 1;
    ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    auto a = sys::to_sockaddr(s_.local, s_.port);
    if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      return Err{sys::errno_text(("bind peer channel " + s_.local.to_string()).c_str())};
    if (::listen(listener_.get(), 4) != 0) return Err{sys::errno_text("listen")};
    loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_listen(); });
  } else {
    connect();
  }
  return Ok{};
}

void Channel::connect() {
  if (state_ != State::Idle) return;
  sys::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  auto local = sys::to_sockaddr(s_.local, 0);
  ::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local);
  auto a = sys::to_sockaddr(s_.remote, s_.port);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno != EINPROGRESS) {
    loop_.after(std::chrono::milliseconds(100), [this] { connect(); });
    return;
  }
  state_ = State::Connecting;
  attempt_started_ = Clock::now();
  attach(std::move(fd));
  // A connect to a host that is down can wait for minutes of SYN retries; a peer that restarts
  // there must be found within a few hundred milliseconds.
  loop_.after(kConnectTimeout, [this, attempt = ++attempt_] {
    if (state_ == State::Connecting && attempt == attempt_) fail("connect timed out");
  });
}

void Channel::connect_now() {
  if (s_.role != Role::Backup) return;
  if (state_ == State::Connecting) {
    // A fresh attempt is under way (a heartbeat arrives every few tens of milliseconds).
    if (Clock::now() - attempt_started_ < kConnectTimeout / 6) return;
    to_idle();
    ++attempt_;
  }
  if (state_ == State::Idle) connect();
}

void Channel::close_socket() {
  if (fd_) {
    loop_.remove(fd_.get());
    fd_.reset();
  }
  send_auth_.reset();
  recv_auth_.reset();
}

void Channel::to_idle() {
  close_socket();
  in_.clear();
  out_.clear();
  out_pos_ = 0;
  state_ = State::Idle;
  ever_up_ = false;
}

void Channel::reset(const std::string& why) {
  to_idle();
  ++attempt_;
  log::info({.event = "channel_reset", .peer = other_role(s_.role), .reason = why},
            "peer: channel reset ({}); waiting for the peer to come back", why);
  if (s_.role == Role::Backup) connect();
}

void Channel::on_listen() {
  for (;;) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int fd = ::accept4(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len,
                       SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    sys::Fd owned(fd);
    wire::Ipv4Addr from = sys::from_sockaddr(a).ip;
    if (from != s_.remote) {
      log::warn({.event = "refused", .reason = "channel connection not from the peer"},
                "peer: refused a channel connection from {} (the peer is {})", from.to_string(),
                s_.remote.to_string());
      ++rejected_;
      continue;
    }
    if (state_ != State::Idle) {
      log::warn(
          {.event = "refused", .peer = other_role(s_.role), .reason = "second channel connection"},
          "peer: refused a second channel connection from {}", from.to_string());
      ++rejected_;
      continue;
    }
    state_ = State::Connecting;
    attach(std::move(owned));
    on_event(EPOLLOUT);
  }
}

void Channel::attach(sys::Fd fd) {
  fd_ = std::move(fd);
  int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  in_.clear();
  out_.clear();
  out_pos_ = 0;
  loop_.add(fd_.get(), EPOLLIN | EPOLLOUT, [this](uint32_t ev) { on_event(ev); });
  loop_.after(kHandshakeTimeout, [this, hs = ++handshakes_] {
    bool shaking =
        state_ == State::Connecting || state_ == State::HelloSent || state_ == State::Confirming;
    if (hs == handshakes_ && fd_ && shaking) {
      ++rejected_;
      fail("handshake timed out (no confirmed hello within 2 s)");
    }
  });
}

void Channel::on_event(uint32_t events) {
  if (!fd_) return;
  if (state_ == State::Connecting && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      fail(std::string("connect: ") + std::strerror(err));
      return;
    }
    if (RAND_bytes(my_nonce_.data(), static_cast<int>(my_nonce_.size())) != 1) std::abort();
    Hello h{s_.role, s_.mode(), s_.boot_id, my_nonce_, s_.shared};
    scratch_.clear();
    encode(scratch_, h);
    hello_auth_.seal(out_, static_cast<uint8_t>(Type::Hello), 0, scratch_);
    state_ = State::HelloSent;
  }
  if (events & EPOLLIN) {
    on_bytes();
    if (!fd_) return;
  }
  flush();
}

void Channel::on_bytes() {
  uint8_t buf[65536];
  // At most 1 MiB per turn: a peer that keeps sending must not starve timers and other sockets
  // (the epoll registration is level-triggered, so the rest is read on the next turn).
  for (int rounds = 0; rounds < 16; ++rounds) {
    ssize_t n = ::read(fd_.get(), buf, sizeof buf);
    if (n > 0) {
      in_.insert(in_.end(), buf, buf + n);
      size_t pos = 0;
      while (fd_) {
        auto size = crypto::FrameAuth::frame_size({in_.data() + pos, in_.size() - pos});
        if (!size) break;
        if (*size > kMaxFrame) {
          fail("frame larger than the channel allows");
          return;
        }
        if (in_.size() - pos < *size) break;
        handle_frame({in_.data() + pos, *size});
        pos += *size;
      }
      if (!fd_) return;
      in_.erase(in_.begin(), in_.begin() + static_cast<long>(pos));
      continue;
    }
    if (n == 0) {
      fail("closed by peer");
      return;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    fail(std::string("read: ") + std::strerror(errno));
    return;
  }
}

void Channel::on_hello(std::span<const uint8_t> frame) {
  auto opened = hello_auth_.open(frame);
  if (!opened || opened->type != static_cast<uint8_t>(Type::Hello)) {
    ++rejected_;
    if (!opened) ++hellos_refused_;
    fail(std::string("bad hello: ") + (opened ? "not a hello" : crypto::to_string(opened.error())));
    return;
  }
  auto h = decode_hello(opened->payload);
  if (!h || h->role == s_.role || h->boot_id == s_.boot_id) {
    ++rejected_;
    fail(!h ? "malformed hello" : h->role == s_.role ? "the peer has our role" : "our own hello");
    return;
  }
  // Session keys bind both nonces, so an old session's frames cannot be replayed into this one.
  std::vector<uint8_t> ctx;
  const auto& primary_nonce = s_.role == Role::Primary ? my_nonce_ : h->nonce;
  const auto& backup_nonce = s_.role == Role::Primary ? h->nonce : my_nonce_;
  ctx.insert(ctx.end(), primary_nonce.begin(), primary_nonce.end());
  ctx.insert(ctx.end(), backup_nonce.begin(), backup_nonce.end());
  auto p2b = crypto::derive_key(s_.key, "understudy channel p2b v2", ctx);
  auto b2p = crypto::derive_key(s_.key, "understudy channel b2p v2", ctx);
  bool primary = s_.role == Role::Primary;
  // GMAC is safe here: each session's keys are new (our nonce is fresh per connection) and its
  // counters count from 1 without repeating.
  send_auth_.emplace(primary ? p2b : b2p, crypto::Mac::Gmac);
  recv_auth_.emplace(primary ? b2p : p2b, crypto::Mac::Gmac);
  send_counter_ = recv_counter_ = 1;
  send_auth_->seal(out_, static_cast<uint8_t>(Type::Confirm), send_counter_++, {});
  peer_hello_ = std::move(*h);
  state_ = State::Confirming;
}

void Channel::handle_frame(std::span<const uint8_t> frame) {
  if (state_ == State::HelloSent) return on_hello(frame);
  if (state_ != State::Confirming && state_ != State::Up) return;
  auto opened = recv_auth_->open(frame);
  if (!opened) {
    ++rejected_;
    fail(std::string("unauthenticated frame: ") + crypto::to_string(opened.error()));
    return;
  }
  if (opened->counter != recv_counter_) {
    ++rejected_;
    fail("frame out of order or replayed");
    return;
  }
  ++recv_counter_;
  if (state_ == State::Confirming) {
    if (opened->type != static_cast<uint8_t>(Type::Confirm)) {
      ++rejected_;
      fail("the peer's first frame is not a confirm");
      return;
    }
    state_ = State::Up;
    ever_up_ = true;
    Hello h = std::move(*peer_hello_);
    peer_hello_.reset();
    log::info({.event = "channel_up", .peer = other_role(s_.role)},
              "peer: channel up with {} (boot {})", s_.remote.to_string(), h.boot_id);
    if (!ev_.up(h)) refuse_peer();
    return;
  }
  ev_.message(static_cast<Type>(opened->type), opened->payload);
}

void Channel::pump() {
  if (fd_ && (state_ == State::HelloSent || state_ == State::Confirming || state_ == State::Up))
    on_bytes();
}

void Channel::send(Type type, std::span<const uint8_t> payload) {
  if (state_ != State::Up) return;
  send_auth_->seal(out_, static_cast<uint8_t>(type), send_counter_++, payload);
  // Do not let a busy turn of the loop sit on megabytes: the peer judges liveness by what arrives.
  if (out_.size() - out_pos_ > kFlushAt) flush();
}

void Channel::flush() {
  if (!fd_ || state_ == State::Connecting) return;
  while (out_pos_ < out_.size()) {
    ssize_t n = ::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_, MSG_NOSIGNAL);
    if (n > 0) {
      out_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    fail(std::string("write: ") + std::strerror(errno));
    return;
  }
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
  } else if (out_pos_ > (1u << 20)) {
    out_.erase(out_.begin(), out_.begin() + static_cast<long>(out_pos_));
    out_pos_ = 0;
  }
  update_interest();
}

bool Channel::drain(std::chrono::milliseconds limit) {
  auto deadline = Clock::now() + limit;
  for (;;) {
    flush();
    if (!fd_ || state_ != State::Up) return false;
    if (queued() == 0) return true;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_.get(), POLLOUT, 0};
    ::poll(&p, 1, static_cast<int>(left));
  }
}

void Channel::update_interest() {
  if (!fd_) return;
  uint32_t ev = EPOLLIN;
  if (state_ == State::Connecting || out_pos_ < out_.size()) ev |= EPOLLOUT;
  loop_.modify(fd_.get(), ev);
}

void Channel::refuse_peer() {
  // Best effort, once: our Hello is a few dozen bytes, which an empty send buffer takes whole.
  if (fd_ && out_pos_ < out_.size())
    (void)::send(fd_.get(), out_.data() + out_pos_, out_.size() - out_pos_,
                 MSG_NOSIGNAL | MSG_DONTWAIT);
  to_idle();
  log::info({.event = "channel_closed",
             .peer = other_role(s_.role),
             .reason = "this node refused the peer"},
            "peer: channel with {} closed: this node refused the peer", s_.remote.to_string());
  if (s_.role == Role::Backup) loop_.after(std::chrono::milliseconds(100), [this] { connect(); });
}

void Channel::fail(const std::string& why) {
  bool was_up = state_ == State::Up;
  close_socket();
  if (was_up || ever_up_) {
    state_ = State::Closed;
    log::warn({.event = "channel_down", .peer = other_role(s_.role), .reason = why},
              "peer: channel down: {}", why);
    if (was_up) ev_.down(why);
    return;
  }
  // Still starting: the peer may not be up yet; try again.
  state_ = State::Idle;
  log::debug({.event = "channel_attempt", .peer = other_role(s_.role), .reason = why},
             "peer: channel attempt failed: {}", why);
  if (s_.role == Role::Backup) loop_.after(std::chrono::milliseconds(100), [this] { connect(); });
}

}  // namespace us::peer
