// The /metrics endpoint (src/metrics/server.hpp) over real loopback sockets, its loop driven from
// this thread a short turn at a time until the awaited event is seen (no sleeps, no threads):
// a scrape is answered and closed, a bad request gets 400, connections over the cap are closed
// at once, and a scraper that never finishes its request is closed at the deadline.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "metrics/server.hpp"
#include "sys/fd.hpp"

namespace us::metrics {
namespace {

using namespace std::chrono_literals;

const wire::Endpoint kAnyPort{wire::Ipv4Addr(127, 0, 0, 1), 0};

struct ServerTest : ::testing::Test {
  sys::EventLoop loop;
  int renders = 0;

  void turn() {
    loop.after(1ms, [this] { loop.stop(); });
    loop.run();
  }
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > end) return false;
      turn();
    }
    return true;
  }
  sys::Fd connect_to(uint16_t port) {
    sys::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a);  // EINPROGRESS
    return fd;
  }
  // Reads what has arrived; true once the peer closed (EOF or reset).
  static bool read_some(int fd, std::string& got) {
    char buf[4096];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        continue;
      }
      return n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
    }
  }
  std::string exchange(Server& s, const std::string& request) {
    auto fd = connect_to(s.port());
    EXPECT_TRUE(run_until([&] { return s.open_connections() == 1; }));
    EXPECT_EQ(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    std::string got;
    EXPECT_TRUE(run_until([&] { return read_some(fd.get(), got); })) << got;
    return got;
  }
  Server::Render render() {
    return [this] {
      ++renders;
      return std::string("# HELP g h\n# TYPE g gauge\ng 1\n");
    };
  }
};

TEST_F(ServerTest, Scrape_AnsweredAndClosed) {
  Server s(loop, render());
  ASSERT_TRUE(s.open(kAnyPort).ok());
  auto got = exchange(s, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\n# HELP g h\n# TYPE g gauge\ng 1\n")) << got;
  EXPECT_EQ(renders, 1);
  EXPECT_TRUE(run_until([&] { return s.open_connections() == 0; }));
  EXPECT_EQ(s.stats().scrapes, 1u);
}

TEST_F(ServerTest, BadRequest_400AndTheServerGoesOn) {
  Server s(loop, render());
  ASSERT_TRUE(s.open(kAnyPort).ok());
  auto bad = exchange(s, "GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n");
  EXPECT_TRUE(bad.starts_with("HTTP/1.1 400 Bad Request\r\n")) << bad;
  EXPECT_TRUE(exchange(s, "PUT /metrics HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 405 "));
  EXPECT_TRUE(exchange(s, "GET /x HTTP/1.1\r\n\r\n").starts_with("HTTP/1.1 404 "));
  EXPECT_EQ(renders, 0);
  EXPECT_TRUE(exchange(s, "GET /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 200 "));
  EXPECT_EQ(s.stats().bad, 3u);
  EXPECT_EQ(s.stats().scrapes, 1u);
}

TEST_F(ServerTest, OverTheCap_ClosedAtOnce) {
  Server s(loop, render(), {.connections = 2, .deadline = 5s});
  ASSERT_TRUE(s.open(kAnyPort).ok());
  std::vector<sys::Fd> held;
  for (int i = 0; i < 2; ++i) held.push_back(connect_to(s.port()));
  ASSERT_TRUE(run_until([&] { return s.open_connections() == 2; }));
  auto extra = connect_to(s.port());
  ASSERT_TRUE(run_until([&] { return s.stats().refused == 1; }));
  std::string got;
  EXPECT_TRUE(run_until([&] { return read_some(extra.get(), got); }));
  EXPECT_EQ(got, "");
  EXPECT_EQ(s.open_connections(), 2u);
}

TEST_F(ServerTest, SlowScraper_ClosedAtTheDeadline) {
  Server s(loop, render(), {.connections = 8, .deadline = 50ms});
  ASSERT_TRUE(s.open(kAnyPort).ok());
  auto fd = connect_to(s.port());
  ASSERT_TRUE(run_until([&] { return s.open_connections() == 1; }));
  std::string part = "GET /metrics HTTP/1.1\r\nHost:";  // and nothing more
  ::send(fd.get(), part.data(), part.size(), MSG_NOSIGNAL);
  std::string got;
  ASSERT_TRUE(run_until([&] { return read_some(fd.get(), got); }));
  EXPECT_EQ(got, "");
  EXPECT_EQ(s.stats().timed_out, 1u);
  EXPECT_EQ(s.open_connections(), 0u);
  EXPECT_EQ(renders, 0);
}

TEST_F(ServerTest, PortTaken_ErrorNamesTheKey) {
  Server a(loop, render());
  ASSERT_TRUE(a.open(kAnyPort).ok());
  Server b(loop, render());
  auto r = b.open({wire::Ipv4Addr(127, 0, 0, 1), a.port()});
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.error().starts_with("metrics.listen: bind 127.0.0.1:")) << r.error();
}

}  // namespace
}  // namespace us::metrics
