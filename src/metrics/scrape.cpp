#include "metrics/scrape.hpp"

namespace us::metrics {

const http_parser_settings ScrapeRequest::kSettings = [] {
  http_parser_settings s{};
  s.on_url = &ScrapeRequest::on_url;
  s.on_headers_complete = &ScrapeRequest::on_headers_complete;
  return s;
}();

ScrapeRequest::ScrapeRequest() {
  http_parser_init(&parser_, HTTP_REQUEST);
  parser_.data = this;
}

int ScrapeRequest::on_url(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<ScrapeRequest*>(p->data);
  self->url_.append(at, len);
  return 0;
}

// The head is all a scrape needs: the parser stops here, and the connection is answered and
// closed, so a body is never read.
int ScrapeRequest::on_headers_complete(http_parser* p) {
  auto* self = static_cast<ScrapeRequest*>(p->data);
  self->headers_done_ = true;
  self->method_ = p->method;
  http_parser_pause(p, 1);
  return 0;
}

ScrapeRequest::State ScrapeRequest::feed(std::span<const uint8_t> bytes) {
  if (state_ != State::NeedMore) return state_;
  seen_ += bytes.size();
  http_parser_execute(&parser_, &kSettings, reinterpret_cast<const char*>(bytes.data()),
                      bytes.size());
  auto err = HTTP_PARSER_ERRNO(&parser_);
  if (headers_done_) {
    http_parser_url u{};
    http_parser_url_init(&u);
    if (http_parser_parse_url(url_.data(), url_.size(), 0, &u) != 0 ||
        !(u.field_set & (1 << UF_PATH)))
      return state_ = State::Bad;
    path_ = url_.substr(u.field_data[UF_PATH].off, u.field_data[UF_PATH].len);
    return state_ = State::Complete;
  }
  if (err != HPE_OK || seen_ > kMaxRequestBytes) return state_ = State::Bad;
  return state_;
}

std::string http_reply(int status, std::string_view body, std::string_view content_type, bool head,
                       std::string_view extra_headers) {
  const char* reason = status == 200   ? "OK"
                       : status == 400 ? "Bad Request"
                       : status == 404 ? "Not Found"
                       : status == 405 ? "Method Not Allowed"
                                       : "Error";
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
  out += "Content-Type: ";
  out += content_type;
  out += "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += extra_headers;
  out += "Connection: close\r\n\r\n";
  if (!head) out += body;
  return out;
}

int answer_status(const ScrapeRequest& req) {
  if (req.state() != ScrapeRequest::State::Complete) return 400;
  if (req.path() != "/metrics") return 404;
  if (!req.is_get_or_head()) return 405;
  return 200;
}

std::string answer(const ScrapeRequest& req, const std::function<std::string()>& render) {
  constexpr std::string_view kText = "text/plain; charset=utf-8";
  switch (answer_status(req)) {
    case 200:
      return http_reply(200, render(), kContentType, req.is_head());
    case 404:
      return http_reply(404, "not found: try /metrics\n", kText, false);
    case 405:
      return http_reply(405, "use GET or HEAD\n", kText, false, "Allow: GET, HEAD\r\n");
    default:
      return http_reply(400, "bad request\n", kText, false);
  }
}

}  // namespace us::metrics
