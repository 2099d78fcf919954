// One scrape of /metrics, without I/O: the request is read with http-parser (the library the
// message layer frames with, http/framer) and answered with a complete HTTP/1.1 reply that closes
// the connection. metrics/server.hpp owns the sockets.
//
//   GET or HEAD /metrics (any query string)  -> 200, text/plain; version=0.0.4
//   another path                              -> 404
//   another method on /metrics                -> 405, Allow: GET, HEAD
//   anything http-parser refuses, or a request head over kMaxRequestBytes -> 400
#pragma once
#include <http_parser.h>

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>

namespace us::metrics {

// A scraper sends a request line and a few headers; anything longer is not one.
inline constexpr size_t kMaxRequestBytes = 8192;
inline constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

class ScrapeRequest {
 public:
  enum class State { NeedMore, Complete, Bad };
  ScrapeRequest();
  ScrapeRequest(const ScrapeRequest&) = delete;
  ScrapeRequest& operator=(const ScrapeRequest&) = delete;

  // Feeds the next bytes of the connection. Complete once the request's headers have arrived (a
  // body, which no scrape has, is not waited for); Bad is sticky.
  State feed(std::span<const uint8_t> bytes);
  State state() const { return state_; }
  // Once Complete.
  bool is_get_or_head() const { return method_ == HTTP_GET || method_ == HTTP_HEAD; }
  bool is_head() const { return method_ == HTTP_HEAD; }
  const std::string& path() const { return path_; }  // the URL's path, without the query

 private:
  static int on_url(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static const http_parser_settings kSettings;

  http_parser parser_{};
  State state_ = State::NeedMore;
  size_t seen_ = 0;
  std::string url_, path_;
  unsigned method_ = 0;
  bool headers_done_ = false;
};

// The status a request in state Complete or Bad gets: 200, 400, 404 or 405.
int answer_status(const ScrapeRequest& req);
// The reply to a request in state Complete or Bad; `render` makes the exposition text (only
// called for a 200).
std::string answer(const ScrapeRequest& req, const std::function<std::string()>& render);

// A complete reply that closes the connection; the body is left out for HEAD, the length kept.
std::string http_reply(int status, std::string_view body, std::string_view content_type, bool head,
                       std::string_view extra_headers = {});

}  // namespace us::metrics
