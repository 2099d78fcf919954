// HTTP/1.1 message framing for the message layer: where each request and reply starts and ends in
// a byte stream, without copying or rewriting it. Read DESIGN.md section 1 (message layer) first.
//
// The parsing is http-parser 2.9.4's; this file adds the proxy's policy on top (RFC 7230 3.3.3
// smuggling shapes, no tunnels, size limits) and exact stream offsets for pipelined messages.
// No I/O, no clock: feed bytes, get boundaries. Errors are returned, never thrown, and sticky.
#pragma once

#include <http_parser.h>

#include <array>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace us::http {

enum class Method : uint8_t { Get, Head, Post, Put, Delete, Options, Patch, Connect, Other };

struct FrameError {
  int status = 400;     // the reply a proxy should send: 400, 413, 431, 501; 502 for a bad upstream
  std::string reason;   // one line for logs
  uint64_t offset = 0;  // stream offset where it failed
  bool operator==(const FrameError&) const = default;
};

// Request line plus headers (and chunked trailers) may not exceed this. http-parser's limit is
// process-wide; both framers set it to this value.
inline constexpr uint32_t kMaxHeaderBytes = 64 * 1024;

struct RequestLimits {
  uint64_t max_body = UINT64_MAX;  // a larger Content-Length or chunked total => 413
  // Header fields (lower-case names) whose lines RequestInfo::strip reports, so that a proxy can
  // remove what a client must not set (the fields the proxy itself vouches for). The names are
  // not copied: they must outlive the framer.
  std::span<const std::string> strip = {};
};

// [begin, end) in the request stream.
struct StreamRange {
  uint64_t begin = 0, end = 0;
  bool operator==(const StreamRange&) const = default;
};

struct RequestInfo {
  uint64_t index = 0;           // 0,1,2... in stream order
  uint64_t begin = 0, end = 0;  // [begin, end) in the stream; end valid once complete
  Method method = Method::Other;
  bool keep_alive = true;
  bool expect_continue = false;
  bool complete = false;
  // Once the headers are complete: the head is [begin, head_end); the blank line that ends it
  // starts at fields_end, where a proxy adds fields of its own; strip holds the whole lines
  // (continuations included) of the fields named in RequestLimits::strip, in stream order.
  uint64_t head_end = 0;
  uint64_t fields_end = 0;
  std::vector<StreamRange> strip;
  bool operator==(const RequestInfo&) const = default;
};

struct ResponseInfo {
  uint64_t index = 0;  // the request this answers; 1xx replies carry the index of their request
  uint64_t begin = 0, end = 0;
  int status = 0;
  bool interim = false;  // 1xx
  bool keep_alive = true;
  bool operator==(const ResponseInfo&) const = default;
};

namespace detail {
// What the framers need to know about header fields; names and a few short values only.
struct HeaderScan {
  enum class Kind : uint8_t { Other, ContentLength, TransferEncoding, Expect };
  std::array<char, 64> name{};  // lower-cased; longer names are not interesting
  size_t name_len = 0;
  bool name_long = false;
  bool in_value = false;  // the last callback was a value: the next field starts a new header
  Kind kind = Kind::Other;
  bool bad_name = false;  // whitespace in a field name (RFC 7230 3.2.4)
  bool te_seen = false;
  bool cl_seen = false;
  bool te_long = false;
  std::string te;            // Transfer-Encoding values joined by ','
  std::string expect;        // Expect value
  bool expect_long = false;  // longer than we keep: never 100-continue, however it was split

  void reset();
  void field(const char* at, size_t len);
  void value(const char* at, size_t len);
  void classify();  // the current name is complete
  std::string_view lower_name() const { return {name.data(), name_len}; }
};
}  // namespace detail

// Frames the client->server stream. Incremental; never copies or keeps body bytes.
// Blank lines before a request are skipped (RFC 7230 3.5): they belong to no request.
class RequestFramer {
 public:
  RequestFramer();
  explicit RequestFramer(RequestLimits limits);

  // Feeds the next bytes of the stream; appends each request that these bytes complete to `done`.
  // Fails with status 400 (malformed, smuggling-shaped framing), 413 (body over the limit),
  // 431 (headers over kMaxHeaderBytes) or 501 (unknown Transfer-Encoding, Upgrade, CONNECT).
  // After an error the framer stays failed: every later call returns the same error.
  Result<Ok, FrameError> feed(std::span<const uint8_t> bytes, std::vector<RequestInfo>& done);

  uint64_t offset() const { return offset_; }  // bytes consumed so far
  // The request in progress (headers may be incomplete), if any.
  const std::optional<RequestInfo>& partial() const { return partial_; }
  uint64_t completed() const { return completed_; }
  // The request in progress has all its headers (its method is known): its reply may start.
  bool headers_complete() const { return partial_.has_value() && headers_done_; }
  const std::optional<FrameError>& error() const { return error_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_header_field(http_parser* p, const char* at, size_t len);
  static int on_header_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_chunk_header(http_parser* p);
  static int on_message_complete(http_parser* p);
  static const http_parser_settings kSettings;

  int reject(int status, std::string reason);  // from a callback: stop the parser
  FrameError map_error();
  uint64_t stream_offset(const char* at) const { return exec_base_ + (at - exec_data_); }
  void end_field_line(uint64_t end);  // the header field begun at line_start_ ends at `end`

  http_parser parser_{};
  RequestLimits limits_;
  uint64_t offset_ = 0;
  uint64_t next_begin_ = 0;
  uint64_t completed_ = 0;
  uint64_t body_seen_ = 0;  // chunked bytes announced so far, for max_body
  bool headers_done_ = false;
  // The parser pauses at the end of the head too (on_headers_complete), on the blank line's LF:
  // that is how the head's exact end is known.
  bool head_paused_ = false;
  const char* exec_data_ = nullptr;     // the bytes given to the running http_parser_execute,
  uint64_t exec_base_ = 0;              // and their stream offset
  char last_byte_ = 0;                  // the last byte the parser consumed
  std::optional<uint64_t> line_start_;  // where the header field being parsed began
  std::optional<RequestInfo> partial_;
  std::optional<FrameError> pending_;  // set by a callback that rejected
  std::optional<FrameError> error_;
  detail::HeaderScan scan_;
};

// Frames the server->client stream. The caller tells it, in order, the method of each request sent
// upstream (expect()), because a HEAD reply's length depends on it (RFC 7230 3.3.3 rule 1).
class ResponseFramer {
 public:
  ResponseFramer();

  // Pushes the method of the next request that awaits a reply (FIFO).
  void expect(Method m) { expected_.push_back(m); }

  // Appends each reply that these bytes complete to `done`. Fails with status 502 (malformed reply,
  // a reply nobody asked for, 101 Switching Protocols); sticky like RequestFramer::feed.
  Result<Ok, FrameError> feed(std::span<const uint8_t> bytes, std::vector<ResponseInfo>& done);
  // The upstream closed: completes a close-delimited body; a reply cut in the middle is an error.
  // Later feed() calls fail.
  Result<Ok, FrameError> finish(std::vector<ResponseInfo>& done);

  uint64_t offset() const { return offset_; }
  uint64_t completed_final() const { return completed_final_; }  // final (non-1xx) replies
  bool in_message() const { return current_.has_value(); }
  size_t awaiting() const { return expected_.size(); }  // requests with no final reply yet
  const std::optional<FrameError>& error() const { return error_; }

 private:
  static int on_message_begin(http_parser* p);
  static int on_header_field(http_parser* p, const char* at, size_t len);
  static int on_header_value(http_parser* p, const char* at, size_t len);
  static int on_headers_complete(http_parser* p);
  static int on_message_complete(http_parser* p);
  static const http_parser_settings kSettings;

  int reject(std::string reason);
  FrameError map_error();
  void complete(std::vector<ResponseInfo>& done);

  http_parser parser_{};
  uint64_t offset_ = 0;
  uint64_t next_begin_ = 0;
  uint64_t completed_final_ = 0;
  bool finished_ = false;
  bool headers_done_ = false;
  std::deque<Method> expected_;
  std::optional<ResponseInfo> current_;
  std::optional<FrameError> pending_;
  std::optional<FrameError> error_;
  detail::HeaderScan scan_;
};

}  // namespace us::http
