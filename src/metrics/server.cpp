#include "metrics/server.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>

#include "sys/socket_address.hpp"

namespace us::metrics {

Server::~Server() {
  while (!conns_.empty()) close(conns_.begin()->first);
  if (listener_) loop_.remove(listener_.get());
}

Result<Ok, std::string> Server::open(const wire::Endpoint& listen) {
  auto fail = [&](const char* what) {
    return Err{sys::errno_text(
        ("metrics.listen: " + std::string(what) + " " + listen.to_string()).c_str())};
  };
  listener_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!listener_) return fail("socket");
  int one = 1;
  ::setsockopt(listener_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = sys::to_sockaddr(listen);
  if (::bind(listener_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return fail("bind");
  if (::listen(listener_.get(), 16) != 0) return fail("listen");
  loop_.add(listener_.get(), EPOLLIN, [this](uint32_t) { on_accept(); });
  return Ok{};
}

uint16_t Server::port() const {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  if (::getsockname(listener_.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return sys::from_sockaddr(a).port;
}

void Server::on_accept() {
  for (;;) {
    sys::Fd fd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd) return;
    if (conns_.size() >= limits_.connections) {
      ++stats_.refused;
      continue;  // closed here: the backlog drains, and the scraper sees a reset or EOF
    }
    int n = fd.get();
    auto c = std::make_unique<Conn>();
    c->fd = std::move(fd);
    c->timer = loop_.after(limits_.deadline, [this, n] {
      ++stats_.timed_out;
      conns_.at(n)->timer = 0;
      close(n);
    });
    conns_.emplace(n, std::move(c));
    loop_.add(n, EPOLLIN, [this, n](uint32_t) { on_event(n); });
  }
}

void Server::on_event(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  Conn& c = *it->second;
  if (!c.answered) {
    uint8_t buf[2048];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return close(fd);
      if (n < 0) return;  // wait for more
      auto st = c.req.feed({buf, static_cast<size_t>(n)});
      if (st == ScrapeRequest::State::NeedMore) continue;
      c.out = answer(c.req, render_);
      c.answered = true;
      ++(answer_status(c.req) == 200 ? stats_.scrapes : stats_.bad);
      loop_.modify(fd, EPOLLOUT);
      break;
    }
  }
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;  // EPOLLOUT brings us back
    if (n <= 0) return close(fd);
    c.sent += static_cast<size_t>(n);
  }
  // Written: our FIN follows the reply. Bytes the scraper sent after its head are not read, so
  // the close may reset; a scraper sends none.
  ::shutdown(fd, SHUT_WR);
  close(fd);
}

void Server::close(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  if (it->second->timer != 0) loop_.cancel(it->second->timer);
  loop_.remove(fd);
  conns_.erase(it);  // closes the socket
}

}  // namespace us::metrics
