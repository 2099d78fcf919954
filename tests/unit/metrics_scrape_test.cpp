// One scrape without sockets (src/metrics/scrape.hpp): the request read at every byte split, and
// the reply for each kind of request: 200 for GET and HEAD /metrics, 404, 405, 400.
#include <gtest/gtest.h>

#include <span>
#include <string>
#include <string_view>

#include "metrics/scrape.hpp"

namespace us::metrics {
namespace {

std::span<const uint8_t> bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const std::string kGet =
    "GET /metrics HTTP/1.1\r\nHost: 198.18.0.11:9464\r\nUser-Agent: Prometheus/2.42.0\r\n"
    "Accept: text/plain;version=0.0.4\r\n\r\n";

std::string render() {
  return "# HELP g h\n# TYPE g gauge\ng 1\n";
}

TEST(ScrapeRequest, CompleteAtEverySplit) {
  for (size_t cut = 0; cut <= kGet.size(); ++cut) {
    ScrapeRequest r;
    auto first = r.feed(bytes(std::string_view(kGet).substr(0, cut)));
    if (cut < kGet.size()) {
      EXPECT_EQ(first, ScrapeRequest::State::NeedMore) << cut;
      r.feed(bytes(std::string_view(kGet).substr(cut)));
    }
    ASSERT_EQ(r.state(), ScrapeRequest::State::Complete) << cut;
    EXPECT_EQ(r.path(), "/metrics");
    EXPECT_TRUE(r.is_get_or_head());
    EXPECT_FALSE(r.is_head());
  }
}

TEST(ScrapeRequest, QueryIsNotPartOfThePath) {
  ScrapeRequest r;
  r.feed(bytes("GET /metrics?name[]=x HTTP/1.0\r\n\r\n"));
  ASSERT_EQ(r.state(), ScrapeRequest::State::Complete);
  EXPECT_EQ(r.path(), "/metrics");
}

TEST(ScrapeRequest, GarbageIsBad) {
  using namespace std::string_view_literals;
  for (std::string_view bad : {"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"sv,  // a TLS hello
                               "GET /metrics HTTP/1.1\r\nContent-Length: x\r\n\r\n"sv,
                               "GET\r\n\r\n"sv, "GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n"sv}) {
    ScrapeRequest r;
    EXPECT_EQ(r.feed(bytes(bad)), ScrapeRequest::State::Bad) << bad;
    // Sticky: nothing later makes it good.
    EXPECT_EQ(r.feed(bytes(kGet)), ScrapeRequest::State::Bad);
  }
}

TEST(ScrapeRequest, HeadOverTheLimitIsBad) {
  ScrapeRequest r;
  std::string head = "GET /metrics HTTP/1.1\r\nX-Pad: ";
  EXPECT_EQ(r.feed(bytes(head)), ScrapeRequest::State::NeedMore);
  std::string pad(1024, 'a');
  ScrapeRequest::State st = ScrapeRequest::State::NeedMore;
  for (int i = 0; i < 9 && st == ScrapeRequest::State::NeedMore; ++i) st = r.feed(bytes(pad));
  EXPECT_EQ(st, ScrapeRequest::State::Bad);
}

std::string answer_to(std::string_view request) {
  ScrapeRequest r;
  r.feed(bytes(request));
  return answer(r, render);
}

TEST(ScrapeAnswer, GetMetrics_200WithTheExposition) {
  EXPECT_EQ(answer_to(kGet),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 30\r\nConnection: close\r\n\r\n"
            "# HELP g h\n# TYPE g gauge\ng 1\n");
}

TEST(ScrapeAnswer, HeadMetrics_200WithoutBody) {
  EXPECT_EQ(answer_to("HEAD /metrics HTTP/1.1\r\n\r\n"),
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
            "Content-Length: 30\r\nConnection: close\r\n\r\n");
}

TEST(ScrapeAnswer, OtherPath_404) {
  for (std::string_view req : {"GET / HTTP/1.1\r\n\r\n", "GET /metrics/ HTTP/1.1\r\n\r\n",
                               "POST /x HTTP/1.1\r\nContent-Length: 1\r\n\r\nx"})
    EXPECT_TRUE(answer_to(req).starts_with("HTTP/1.1 404 Not Found\r\n")) << req;
}

TEST(ScrapeAnswer, OtherMethod_405WithAllow) {
  for (std::string_view req :
       {"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
        "DELETE /metrics HTTP/1.1\r\n\r\n", "OPTIONS /metrics HTTP/1.1\r\n\r\n"}) {
    auto a = answer_to(req);
    EXPECT_TRUE(a.starts_with("HTTP/1.1 405 Method Not Allowed\r\n")) << req;
    EXPECT_NE(a.find("\r\nAllow: GET, HEAD\r\n"), std::string::npos) << a;
  }
}

TEST(ScrapeAnswer, StatusForEachKind) {
  auto status = [](std::string_view request) {
    ScrapeRequest r;
    r.feed(bytes(request));
    return answer_status(r);
  };
  EXPECT_EQ(status("GET /metrics HTTP/1.1\r\n\r\n"), 200);
  EXPECT_EQ(status("HEAD /metrics?x=1 HTTP/1.1\r\n\r\n"), 200);
  EXPECT_EQ(status("GET /metricsx HTTP/1.1\r\n\r\n"), 404);
  EXPECT_EQ(status("PATCH /metrics HTTP/1.1\r\n\r\n"), 405);
  EXPECT_EQ(status("GET /metrics HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400);
}

TEST(ScrapeAnswer, Malformed_400AndNotRendered) {
  ScrapeRequest r;
  r.feed(bytes("BREW /metrics HTCPCP/1.0\r\n\r\n"));
  bool rendered = false;
  auto a = answer(r, [&] {
    rendered = true;
    return std::string();
  });
  EXPECT_TRUE(a.starts_with("HTTP/1.1 400 Bad Request\r\n")) << a;
  EXPECT_NE(a.find("\r\nConnection: close\r\n"), std::string::npos);
  EXPECT_FALSE(rendered);
}

}  // namespace
}  // namespace us::metrics
