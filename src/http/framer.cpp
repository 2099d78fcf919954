// Framing policy on top of http-parser 2.9.4. The parser is paused at the end of every message so
// the byte count http_parser_execute returns is the exact end offset of that message.
#include "http/framer.hpp"

#include <mutex>
#include <string_view>

namespace us::http {
namespace {

void set_header_limit() {
  // Process-wide in http-parser; set once, before any framer parses.
  static std::once_flag once;
  std::call_once(once, [] { http_parser_set_max_header_size(kMaxHeaderBytes); });
}

char lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_ows(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ows(s.back())) s.remove_suffix(1);
  return s;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != b[i]) return false;
  }
  return true;
}

Method to_method(unsigned m) {
  switch (static_cast<http_method>(m)) {
    case HTTP_GET:
      return Method::Get;
    case HTTP_HEAD:
      return Method::Head;
    case HTTP_POST:
      return Method::Post;
    case HTTP_PUT:
      return Method::Put;
    case HTTP_DELETE:
      return Method::Delete;
    case HTTP_OPTIONS:
      return Method::Options;
    case HTTP_PATCH:
      return Method::Patch;
    case HTTP_CONNECT:
      return Method::Connect;
    default:
      return Method::Other;
  }
}

// Only "chunked", once, is accepted, as nginx does: any other coding is one we (and the server
// behind us) cannot frame (RFC 7230 3.3.1 => 501); chunked twice or empty is malformed (3.3.3).
std::optional<FrameError> check_request_te(std::string_view te) {
  int chunked = 0;
  while (!te.empty()) {
    size_t comma = te.find(',');
    std::string_view tok = trim(te.substr(0, comma));
    te = comma == std::string_view::npos ? std::string_view{} : te.substr(comma + 1);
    if (tok.empty()) continue;
    if (!iequals(tok, "chunked")) {
      return FrameError{501, "unsupported Transfer-Encoding", 0};
    }
    ++chunked;
  }
  if (chunked != 1) return FrameError{400, "malformed Transfer-Encoding", 0};
  return std::nullopt;
}

constexpr size_t kMaxTeValue = 256;
constexpr size_t kMaxExpectValue = 64;

}  // namespace

// ---- HeaderScan ----

namespace detail {

void HeaderScan::reset() {
  *this = HeaderScan{};
}

void HeaderScan::field(const char* at, size_t len) {
  if (in_value) {  // a new header starts
    name_len = 0;
    name_long = false;
    kind = Kind::Other;
    in_value = false;
  }
  for (size_t i = 0; i < len; ++i) {
    // http-parser accepts "Name :"; a server may ignore such a line, so the two would frame
    // differently (RFC 7230 3.2.4 says reject).
    if (is_ows(at[i])) bad_name = true;
    if (name_len < name.size()) {
      name[name_len++] = lower(at[i]);
    } else {
      name_long = true;
    }
  }
}

void HeaderScan::classify() {
  std::string_view n(name.data(), name_len);
  kind = Kind::Other;
  if (name_long) return;
  if (n == "content-length") {
    kind = Kind::ContentLength;
    cl_seen = true;
  } else if (n == "transfer-encoding") {
    kind = Kind::TransferEncoding;
    if (te_seen) te.push_back(',');  // repeated fields are one comma list (RFC 7230 3.2.2)
    te_seen = true;
  } else if (n == "expect") {
    kind = Kind::Expect;
  }
}

void HeaderScan::value(const char* at, size_t len) {
  if (!in_value) {
    classify();
    in_value = true;
  }
  switch (kind) {
    case Kind::TransferEncoding:
      if (te.size() + len > kMaxTeValue) {
        te_long = true;
      } else {
        te.append(at, len);
      }
      break;
    case Kind::Expect:
      if (expect.size() + len > kMaxExpectValue) {
        expect_long = true;
      } else {
        expect.append(at, len);
      }
      break;
    default:
      break;
  }
}

}  // namespace detail

// ---- RequestFramer ----

const http_parser_settings RequestFramer::kSettings = {
    .on_message_begin = &RequestFramer::on_message_begin,
    .on_url = nullptr,
    .on_status = nullptr,
    .on_header_field = &RequestFramer::on_header_field,
    .on_header_value = &RequestFramer::on_header_value,
    .on_headers_complete = &RequestFramer::on_headers_complete,
    .on_body = nullptr,
    .on_message_complete = &RequestFramer::on_message_complete,
    .on_chunk_header = &RequestFramer::on_chunk_header,
    .on_chunk_complete = nullptr,
};

RequestFramer::RequestFramer() : RequestFramer(RequestLimits{}) {}

RequestFramer::RequestFramer(RequestLimits limits) : limits_(limits) {
  set_header_limit();
  http_parser_init(&parser_, HTTP_REQUEST);
}

int RequestFramer::reject(int status, std::string reason) {
  pending_ = FrameError{status, std::move(reason), 0};
  return -1;  // not 0, 1 or 2: an error for every callback, on_headers_complete included
}

int RequestFramer::on_message_begin(http_parser* p) {
  auto* self = static_cast<RequestFramer*>(p->data);
  RequestInfo info;
  info.index = self->completed_;
  info.begin = self->next_begin_;
  self->partial_ = info;
  self->scan_.reset();
  self->body_seen_ = 0;
  self->headers_done_ = false;
  self->line_start_.reset();
  return 0;
}

void RequestFramer::end_field_line(uint64_t end) {
  if (!line_start_) return;
  auto& s = scan_;
  if (!s.name_long) {
    for (const auto& name : limits_.strip) {
      if (name == s.lower_name()) {
        partial_->strip.push_back({*line_start_, end});
        break;
      }
    }
  }
  line_start_.reset();
}

int RequestFramer::on_header_field(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestFramer*>(p->data);
  // A field's name may come in pieces (one per feed); only the first one starts its line. The
  // line before it, continuations included, ends here. Trailers are in the body: not edited.
  if (!self->headers_done_ && (self->scan_.in_value || !self->line_start_)) {
    const uint64_t here = self->stream_offset(at);
    self->end_field_line(here);
    self->line_start_ = here;
  }
  self->scan_.field(at, len);
  if (self->scan_.bad_name) return self->reject(400, "whitespace in a header field name");
  return 0;
}

int RequestFramer::on_header_value(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<RequestFramer*>(p->data);
  if (!self->headers_done_) self->scan_.value(at, len);  // trailers do not frame
  return 0;
}

int RequestFramer::on_headers_complete(http_parser* p) {
  auto* self = static_cast<RequestFramer*>(p->data);
  auto& scan = self->scan_;
  auto& info = *self->partial_;
  self->headers_done_ = true;
  info.method = to_method(p->method);
  info.keep_alive = http_should_keep_alive(p) != 0;
  const bool http11 = p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1);
  // 100-continue is meaningless from an HTTP/1.0 client (RFC 7231 5.1.1).
  info.expect_continue = http11 && !scan.expect_long && iequals(trim(scan.expect), "100-continue");

  if (p->method == HTTP_CONNECT) return self->reject(501, "CONNECT (we do not tunnel)");
  if (p->upgrade) return self->reject(501, "Upgrade (we do not tunnel)");
  // http-parser 2.9.4 already refuses these; kept so the policy does not hang on its flags.
  if ((p->flags & F_CONTENTLENGTH) && (scan.te_seen || (p->flags & F_CHUNKED))) {
    return self->reject(400, "both Content-Length and Transfer-Encoding (smuggling-shaped)");
  }
  if (scan.te_seen) {
    if (!http11) return self->reject(400, "Transfer-Encoding in HTTP/1.0 (RFC 7230 3.3.1)");
    if (scan.te_long) return self->reject(501, "unsupported Transfer-Encoding");
    if (auto e = check_request_te(scan.te)) return self->reject(e->status, std::move(e->reason));
  }
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > self->limits_.max_body) {
    return self->reject(413, "Content-Length over the body limit");
  }
  // The parser stands on the blank line's LF: feed() reads the offset from where it stopped.
  self->head_paused_ = true;
  http_parser_pause(p, 1);
  return 0;
}

int RequestFramer::on_chunk_header(http_parser* p) {
  auto* self = static_cast<RequestFramer*>(p->data);
  // content_length holds this chunk's size here.
  if (p->content_length > self->limits_.max_body - self->body_seen_) {
    return self->reject(413, "chunked body over the body limit");
  }
  self->body_seen_ += p->content_length;
  return 0;
}

int RequestFramer::on_message_complete(http_parser* p) {
  // Stop right after this message: execute() then returns its exact end.
  http_parser_pause(p, 1);
  return 0;
}

FrameError RequestFramer::map_error() {
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  FrameError e;
  if (pending_) {
    e = std::move(*pending_);
    pending_.reset();
  } else {
    switch (err) {
      case HPE_HEADER_OVERFLOW:
        e = {431, "request line and headers over 64 KiB", 0};
        break;
      case HPE_UNEXPECTED_CONTENT_LENGTH:
        // The field being parsed may not be classified yet.
        if (!scan_.in_value) scan_.classify();
        if (scan_.te_seen) {
          e = {400, "both Content-Length and Transfer-Encoding (smuggling-shaped)", 0};
        } else {
          e = {400, "repeated Content-Length (smuggling-shaped)", 0};
        }
        break;
      case HPE_INVALID_TRANSFER_ENCODING:
        e = {501, "unsupported Transfer-Encoding", 0};
        break;
      case HPE_INVALID_CONTENT_LENGTH:  // includes lists such as "5, 6"
        e = {400, "invalid Content-Length", 0};
        break;
      default:
        e = {400, std::string("malformed request: ") + http_errno_description(err), 0};
        break;
    }
  }
  e.offset = offset_;
  return e;
}

Result<Ok, FrameError> RequestFramer::feed(std::span<const uint8_t> bytes,
                                           std::vector<RequestInfo>& done) {
  if (error_) return Err{*error_};
  parser_.data = this;  // the framer may have moved since the last call
  const char* data = reinterpret_cast<const char*>(bytes.data());
  size_t pos = 0;
  while (pos < bytes.size()) {  // never execute() with 0 bytes: that means end of stream
    if (!partial_) {
      // Between requests: skip blank lines ourselves, so the next byte begins the request.
      while (pos < bytes.size() && (data[pos] == '\r' || data[pos] == '\n')) {
        ++pos;
        ++offset_;
      }
      if (pos == bytes.size()) break;
      next_begin_ = offset_;
    }
    exec_data_ = data + pos;
    exec_base_ = offset_;
    const size_t n = http_parser_execute(&parser_, &kSettings, data + pos, bytes.size() - pos);
    pos += n;
    offset_ += n;
    if (n > 0) last_byte_ = data[pos - 1];
    const auto err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_PAUSED && head_paused_) {
      // offset_ is the blank line's LF, not consumed yet (execute() resumes on it). Every line
      // of a head ends in LF or CRLF (http-parser wants LF after CR), so a CR just before this
      // LF is the blank line's own.
      head_paused_ = false;
      partial_->head_end = offset_ + 1;
      partial_->fields_end = last_byte_ == '\r' ? offset_ - 1 : offset_;
      end_field_line(partial_->fields_end);
      http_parser_pause(&parser_, 0);
      continue;
    }
    if (err == HPE_PAUSED) {
      partial_->end = offset_;
      partial_->complete = true;
      done.push_back(*partial_);
      partial_.reset();
      ++completed_;
      http_parser_pause(&parser_, 0);
      continue;
    }
    if (err != HPE_OK) {
      error_ = map_error();
      return Err{*error_};
    }
    if (parser_.upgrade) {  // belt and braces: the parser stopped for a protocol switch
      error_ = FrameError{501, "Upgrade (we do not tunnel)", offset_};
      return Err{*error_};
    }
  }
  return Ok{};
}

// ---- ResponseFramer ----

const http_parser_settings ResponseFramer::kSettings = {
    .on_message_begin = &ResponseFramer::on_message_begin,
    .on_url = nullptr,
    .on_status = nullptr,
    .on_header_field = &ResponseFramer::on_header_field,
    .on_header_value = &ResponseFramer::on_header_value,
    .on_headers_complete = &ResponseFramer::on_headers_complete,
    .on_body = nullptr,
    .on_message_complete = &ResponseFramer::on_message_complete,
    .on_chunk_header = nullptr,
    .on_chunk_complete = nullptr,
};

ResponseFramer::ResponseFramer() {
  set_header_limit();
  http_parser_init(&parser_, HTTP_RESPONSE);
}

int ResponseFramer::reject(std::string reason) {
  pending_ = FrameError{502, std::move(reason), 0};
  return -1;
}

int ResponseFramer::on_message_begin(http_parser* p) {
  auto* self = static_cast<ResponseFramer*>(p->data);
  ResponseInfo info;
  info.index = self->completed_final_;
  info.begin = self->next_begin_;
  self->current_ = info;
  self->scan_.reset();
  self->headers_done_ = false;
  return 0;
}

int ResponseFramer::on_header_field(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<ResponseFramer*>(p->data);
  self->scan_.field(at, len);
  if (self->scan_.bad_name) return self->reject("upstream sent whitespace in a header field name");
  return 0;
}

int ResponseFramer::on_header_value(http_parser* p, const char* at, size_t len) {
  auto* self = static_cast<ResponseFramer*>(p->data);
  if (!self->headers_done_) self->scan_.value(at, len);
  return 0;
}

int ResponseFramer::on_headers_complete(http_parser* p) {
  auto* self = static_cast<ResponseFramer*>(p->data);
  auto& info = *self->current_;
  self->headers_done_ = true;
  info.status = static_cast<int>(p->status_code);
  info.interim = info.status >= 100 && info.status < 200;
  if (self->expected_.empty()) return self->reject("upstream reply with no request awaiting it");
  if (info.status == 101)
    return self->reject("upstream 101 Switching Protocols (we do not tunnel)");
  if ((p->flags & F_CONTENTLENGTH) && (self->scan_.te_seen || (p->flags & F_CHUNKED))) {
    return self->reject("upstream sent both Content-Length and Transfer-Encoding");
  }
  // RFC 7230 3.3.3 rule 1: replies to HEAD, 1xx, 204 and 304 end at the headers whatever
  // Content-Length or Transfer-Encoding say. 1 is http-parser's "no body" answer.
  const bool no_body = self->expected_.front() == Method::Head || info.interim ||
                       info.status == 204 || info.status == 304;
  return no_body ? 1 : 0;
}

int ResponseFramer::on_message_complete(http_parser* p) {
  auto* self = static_cast<ResponseFramer*>(p->data);
  // Here the parser knows whether the body was skipped, so keep-alive is exact
  // (a HEAD reply without Content-Length is not close-delimited).
  self->current_->keep_alive = http_should_keep_alive(p) != 0;
  http_parser_pause(p, 1);
  return 0;
}

void ResponseFramer::complete(std::vector<ResponseInfo>& done) {
  current_->end = offset_;
  if (!current_->interim) {
    expected_.pop_front();
    ++completed_final_;
  }
  done.push_back(*current_);
  current_.reset();
  http_parser_pause(&parser_, 0);
}

FrameError ResponseFramer::map_error() {
  FrameError e;
  if (pending_) {
    e = std::move(*pending_);
    pending_.reset();
  } else {
    const auto err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_UNEXPECTED_CONTENT_LENGTH && !scan_.in_value) scan_.classify();
    if (err == HPE_UNEXPECTED_CONTENT_LENGTH && scan_.te_seen) {
      e = {502, "upstream sent both Content-Length and Transfer-Encoding", 0};
    } else {
      e = {502, std::string("malformed upstream reply: ") + http_errno_description(err), 0};
    }
  }
  e.offset = offset_;
  return e;
}

Result<Ok, FrameError> ResponseFramer::feed(std::span<const uint8_t> bytes,
                                            std::vector<ResponseInfo>& done) {
  if (error_) return Err{*error_};
  if (finished_ && !bytes.empty()) {
    error_ = FrameError{502, "upstream bytes after its close", offset_};
    return Err{*error_};
  }
  parser_.data = this;
  const char* data = reinterpret_cast<const char*>(bytes.data());
  size_t pos = 0;
  while (pos < bytes.size()) {  // never execute() with 0 bytes: that means end of stream
    if (!current_) {
      while (pos < bytes.size() && (data[pos] == '\r' || data[pos] == '\n')) {
        ++pos;
        ++offset_;
      }
      if (pos == bytes.size()) break;
      next_begin_ = offset_;
    }
    const size_t n = http_parser_execute(&parser_, &kSettings, data + pos, bytes.size() - pos);
    pos += n;
    offset_ += n;
    const auto err = HTTP_PARSER_ERRNO(&parser_);
    if (err == HPE_PAUSED) {
      complete(done);
      continue;
    }
    if (err != HPE_OK) {
      error_ = map_error();
      return Err{*error_};
    }
    if (parser_.upgrade) {
      error_ = FrameError{502, "upstream switched protocols (we do not tunnel)", offset_};
      return Err{*error_};
    }
  }
  return Ok{};
}

Result<Ok, FrameError> ResponseFramer::finish(std::vector<ResponseInfo>& done) {
  if (error_) return Err{*error_};
  if (finished_) return Ok{};
  finished_ = true;
  if (!current_) return Ok{};
  parser_.data = this;
  http_parser_execute(&parser_, &kSettings, nullptr, 0);  // 0 bytes: end of stream
  const auto err = HTTP_PARSER_ERRNO(&parser_);
  if (err == HPE_PAUSED) {  // a close-delimited body ended (RFC 7230 3.3.3 rule 7)
    complete(done);
    return Ok{};
  }
  error_ = err == HPE_OK ? FrameError{502, "upstream closed in the middle of a reply", offset_}
                         : map_error();
  if (err == HPE_INVALID_EOF_STATE) error_->reason = "upstream closed in the middle of a reply";
  return Err{*error_};
}

}  // namespace us::http
