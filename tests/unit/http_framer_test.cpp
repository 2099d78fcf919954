// HTTP framer tests. Every stream is fed whole, split in two at every byte boundary, and one byte
// at a time: proxies meet arbitrary TCP segmentation, and boundaries must not depend on it.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "http/error_reply.hpp"
#include "http/framer.hpp"

namespace us::http {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Ways to cut a stream of n bytes into segments: whole, two pieces at every k, byte by byte.
std::vector<std::vector<size_t>> segmentations(size_t n) {
  std::vector<std::vector<size_t>> out;
  out.push_back({n});
  for (size_t k = 0; k <= n; ++k) out.push_back({k, n - k});
  out.push_back(std::vector<size_t>(n, 1));
  return out;
}

std::string describe(const std::vector<size_t>& seg) {
  std::string s;
  for (size_t len : seg) s += std::to_string(len) + " ";
  return s;
}

// A stream built from messages; "gap" pieces (blank lines) belong to no message.
struct Piece {
  std::string text;
  bool gap = false;
};

struct Built {
  std::string stream;
  std::vector<std::pair<uint64_t, uint64_t>> spans;  // [begin, end) per message
};

Built build(const std::vector<Piece>& pieces) {
  Built b;
  for (const auto& p : pieces) {
    if (!p.gap) b.spans.emplace_back(b.stream.size(), b.stream.size() + p.text.size());
    b.stream += p.text;
  }
  return b;
}

// ---- requests ----

struct ReqOutcome {
  std::vector<RequestInfo> done;
  std::optional<FrameError> error;
  uint64_t offset = 0;
  uint64_t completed = 0;
  std::optional<RequestInfo> partial;
};

ReqOutcome run_requests(std::string_view stream, const std::vector<size_t>& seg,
                        RequestLimits limits = {}) {
  RequestFramer f(limits);
  ReqOutcome o;
  size_t pos = 0;
  for (size_t len : seg) {
    auto r = f.feed(bytes_of(stream.substr(pos, len)), o.done);
    pos += len;
    if (!r) {
      o.error = r.error();
      break;
    }
  }
  o.offset = f.offset();
  o.completed = f.completed();
  o.partial = f.partial();
  return o;
}

struct ReqExpect {
  Method method = Method::Get;
  bool keep_alive = true;
  bool expect_continue = false;
};

// Checks the whole-buffer run against the expected boundaries, then every segmentation against it.
void check_requests(const std::vector<Piece>& pieces, const std::vector<ReqExpect>& want) {
  const Built b = build(pieces);
  ASSERT_EQ(b.spans.size(), want.size());
  const ReqOutcome whole = run_requests(b.stream, {b.stream.size()});
  ASSERT_FALSE(whole.error) << whole.error->reason;
  ASSERT_EQ(whole.done.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i));
    const auto& r = whole.done[i];
    EXPECT_EQ(r.index, i);
    EXPECT_EQ(r.begin, b.spans[i].first);
    EXPECT_EQ(r.end, b.spans[i].second);
    EXPECT_EQ(r.method, want[i].method);
    EXPECT_EQ(r.keep_alive, want[i].keep_alive);
    EXPECT_EQ(r.expect_continue, want[i].expect_continue);
    EXPECT_TRUE(r.complete);
  }
  EXPECT_EQ(whole.completed, want.size());
  EXPECT_EQ(whole.offset, b.stream.size());
  EXPECT_FALSE(whole.partial);
  for (const auto& seg : segmentations(b.stream.size())) {
    const ReqOutcome o = run_requests(b.stream, seg);
    ASSERT_FALSE(o.error) << describe(seg) << o.error->reason;
    ASSERT_EQ(o.done, whole.done) << describe(seg);
    ASSERT_EQ(o.offset, whole.offset);
    ASSERT_EQ(o.completed, whole.completed);
  }
}

TEST(RequestFramer, KeepAliveGets) {
  check_requests({{"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"},
                  {"GET /b HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"},
                  {"HEAD /c HTTP/1.1\r\nHost: x\r\n\r\n"}},
                 {{Method::Get}, {Method::Get}, {Method::Head}});
}

TEST(RequestFramer, ThreePipelinedInOneBuffer) {
  check_requests({{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"},
                  {"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"},
                  {"DELETE /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"}},
                 {{Method::Get}, {Method::Post}, {Method::Delete, false}});
}

TEST(RequestFramer, BlankLinesBetweenRequestsBelongToNone) {
  check_requests({{"\r\n", true},
                  {"GET / HTTP/1.1\r\n\r\n"},
                  {"\r\n\r\n", true},
                  {"OPTIONS * HTTP/1.1\r\n\r\n"}},
                 {{Method::Get}, {Method::Options}});
}

TEST(RequestFramer, PostWithContentLengthBody) {
  check_requests(
      {{"POST /form HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"},
       {"PUT /f HTTP/1.1\r\nContent-Length: 0\r\n\r\n"},
       {"PATCH /f HTTP/1.1\r\nContent-Length: 4\r\n\r\n\r\n\r\n"}},  // a body of CRLFs is a body
      {{Method::Post}, {Method::Put}, {Method::Patch}});
}

TEST(RequestFramer, ChunkedWithExtensionsAndTrailers) {
  check_requests({{"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5;name=value\r\nhello\r\n"
                   "6;a=b;c=\"d\"\r\n world\r\n"
                   "0\r\nX-Checksum: 1234\r\nX-More: yes\r\n\r\n"},
                  {"POST /up2 HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n"
                   "A\r\n0123456789\r\n0\r\n\r\n"},
                  {"GET / HTTP/1.1\r\n\r\n"}},
                 {{Method::Post}, {Method::Post}, {Method::Get}});
}

TEST(RequestFramer, ExpectContinue) {
  check_requests(
      {{"POST /big HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\nContent-Length: 4\r\n\r\nbody"},
       {"POST /b HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\nz"}},
      {{Method::Post, true, true}, {Method::Post, false, false}});  // 1.0: no 100 (RFC 7231 5.1.1)
}

TEST(RequestFramer, Http10KeepAlive) {
  check_requests({{"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"}, {"GET / HTTP/1.0\r\n\r\n"}},
                 {{Method::Get, true}, {Method::Get, false}});
}

TEST(RequestFramer, PartialShowsRequestInProgress) {
  RequestFramer f;
  std::vector<RequestInfo> done;
  const std::string s = "GET / HTTP/1.1\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab";
  ASSERT_TRUE(f.feed(bytes_of(s), done));
  ASSERT_EQ(done.size(), 1u);
  ASSERT_TRUE(f.partial());
  EXPECT_EQ(f.partial()->index, 1u);
  EXPECT_EQ(f.partial()->begin, 18u);
  EXPECT_EQ(f.partial()->method, Method::Post);
  EXPECT_FALSE(f.partial()->complete);
  ASSERT_TRUE(f.feed(bytes_of("cde"), done));
  ASSERT_EQ(done.size(), 2u);
  EXPECT_EQ(done[1].end, s.size() + 3);
  EXPECT_FALSE(f.partial());
  EXPECT_EQ(f.completed(), 2u);
}

// Bad input: same status at every segmentation; the framer then stays failed.
void check_bad_request(const std::string& stream, int status, std::string_view reason_part,
                       RequestLimits limits = {}) {
  const ReqOutcome whole = run_requests(stream, {stream.size()}, limits);
  ASSERT_TRUE(whole.error);
  EXPECT_EQ(whole.error->status, status) << whole.error->reason;
  EXPECT_NE(whole.error->reason.find(reason_part), std::string::npos) << whole.error->reason;
  for (const auto& seg : segmentations(stream.size())) {
    const ReqOutcome o = run_requests(stream, seg, limits);
    ASSERT_TRUE(o.error) << describe(seg);
    ASSERT_EQ(o.error->status, status) << describe(seg) << o.error->reason;
    ASSERT_EQ(o.error->reason, whole.error->reason) << describe(seg);
  }
  // Sticky.
  RequestFramer f(limits);
  std::vector<RequestInfo> done;
  auto first = f.feed(bytes_of(stream), done);
  ASSERT_FALSE(first);
  auto again = f.feed(bytes_of("GET / HTTP/1.1\r\n\r\n"), done);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), first.error());
}

TEST(RequestFramer, ContentLengthAndTransferEncodingRejected) {
  check_bad_request(
      "POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
      "smuggling");
  check_bad_request(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400,
      "both Content-Length and Transfer-Encoding");
}

TEST(RequestFramer, ConflictingContentLengthRejected) {
  check_bad_request("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", 400,
                    "repeated Content-Length");
  check_bad_request("POST / HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\nhello!", 400,
                    "invalid Content-Length");
  // Stricter than RFC 7230 3.3.2 needs: equal repeats are refused too (http-parser does so).
  check_bad_request("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", 400,
                    "repeated Content-Length");
}

TEST(RequestFramer, OversizedHeaderIs431) {
  const std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(70 * 1024, 'a') + "\r\n\r\n";
  const ReqOutcome o = run_requests(big, {big.size()});
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.error->status, 431);
  // Under the limit is fine.
  const std::string ok = "GET / HTTP/1.1\r\nX-Big: " + std::string(60 * 1024, 'a') + "\r\n\r\n";
  const ReqOutcome o2 = run_requests(ok, std::vector<size_t>(ok.size() / 1000 + 1, 1000));
  EXPECT_FALSE(o2.error);
  EXPECT_EQ(o2.completed, 1u);
}

TEST(RequestFramer, GarbageRequestLineIs400) {
  check_bad_request("\x01\x02 nonsense\r\n\r\n", 400, "malformed");
  check_bad_request("GET / HTTP/1.1\r\n\r\nGET /\x7f HTTP/1.1\r\n\r\n", 400, "malformed");
  check_bad_request("GET / HTTP/9.Z\r\n\r\n", 400, "malformed");
}

TEST(RequestFramer, UnknownTransferEncodingIs501) {
  check_bad_request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx", 501,
                    "Transfer-Encoding");
  check_bad_request("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 501,
                    "Transfer-Encoding");
  check_bad_request(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
      "chunked\r\n\r\n0\r\n\r\n",
      400, "Transfer-Encoding");
}

TEST(RequestFramer, WhitespaceBeforeColonRejected) {
  // http-parser alone accepts this and frames it as chunked; a server may ignore the line.
  check_bad_request("POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400,
                    "whitespace");
}

TEST(RequestFramer, UpgradeAndConnectAre501) {
  check_bad_request("GET /ws HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", 501,
                    "Upgrade");
  check_bad_request("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n", 501,
                    "CONNECT");
}

TEST(RequestFramer, BodyLimitIs413) {
  check_bad_request("POST / HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world", 413, "limit",
                    RequestLimits{10});
  check_bad_request(
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello "
      "\r\n6\r\nworld!\r\n0\r\n\r\n",
      413, "limit", RequestLimits{10});
}

TEST(RequestFramer, ErrorOffsetIsWhereItFailed) {
  const std::string good = "GET / HTTP/1.1\r\n\r\n";
  const ReqOutcome o = run_requests(good + "BOGUS!", {good.size() + 6});
  ASSERT_TRUE(o.error);
  EXPECT_EQ(o.done.size(), 1u);
  EXPECT_GE(o.error->offset, good.size());
  EXPECT_LE(o.error->offset, good.size() + 6);
}

// ---- responses ----

struct RespOutcome {
  std::vector<ResponseInfo> done;
  std::optional<FrameError> error;
  uint64_t offset = 0;
  uint64_t finals = 0;
  bool in_message = false;
};

RespOutcome run_responses(std::string_view stream, const std::vector<size_t>& seg,
                          const std::vector<Method>& methods, bool finish) {
  ResponseFramer f;
  for (Method m : methods) f.expect(m);
  RespOutcome o;
  size_t pos = 0;
  for (size_t len : seg) {
    auto r = f.feed(bytes_of(stream.substr(pos, len)), o.done);
    pos += len;
    if (!r) {
      o.error = r.error();
      break;
    }
  }
  o.in_message = f.in_message();
  if (finish && !o.error) {
    auto r = f.finish(o.done);
    if (!r) o.error = r.error();
  }
  o.offset = f.offset();
  o.finals = f.completed_final();
  return o;
}

struct RespExpect {
  uint64_t index = 0;
  int status = 200;
  bool interim = false;
  bool keep_alive = true;
};

void check_responses(const std::vector<Piece>& pieces, const std::vector<Method>& methods,
                     const std::vector<RespExpect>& want, bool finish = false) {
  const Built b = build(pieces);
  ASSERT_EQ(b.spans.size(), want.size());
  const RespOutcome whole = run_responses(b.stream, {b.stream.size()}, methods, finish);
  ASSERT_FALSE(whole.error) << whole.error->reason;
  ASSERT_EQ(whole.done.size(), want.size());
  uint64_t finals = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("reply " + std::to_string(i));
    const auto& r = whole.done[i];
    EXPECT_EQ(r.index, want[i].index);
    EXPECT_EQ(r.begin, b.spans[i].first);
    EXPECT_EQ(r.end, b.spans[i].second);
    EXPECT_EQ(r.status, want[i].status);
    EXPECT_EQ(r.interim, want[i].interim);
    EXPECT_EQ(r.keep_alive, want[i].keep_alive);
    if (!want[i].interim) ++finals;
  }
  EXPECT_EQ(whole.finals, finals);
  EXPECT_EQ(whole.offset, b.stream.size());
  for (const auto& seg : segmentations(b.stream.size())) {
    const RespOutcome o = run_responses(b.stream, seg, methods, finish);
    ASSERT_FALSE(o.error) << describe(seg) << o.error->reason;
    ASSERT_EQ(o.done, whole.done) << describe(seg);
    ASSERT_EQ(o.offset, whole.offset);
    ASSERT_EQ(o.finals, whole.finals);
  }
}

TEST(ResponseFramer, ContentLength) {
  check_responses({{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"},
                   {"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"}},
                  {Method::Get, Method::Get}, {{0, 200}, {1, 404}});
}

TEST(ResponseFramer, ChunkedWithTrailers) {
  check_responses({{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nExpires: never\r\n\r\n"},
                   {"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"}},
                  {Method::Get, Method::Post}, {{0, 200}, {1, 200}});
}

TEST(ResponseFramer, HeadReplyHasNoBody) {
  check_responses({{"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"},
                   {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"},
                   {"HTTP/1.1 200 OK\r\n\r\n"},  // neither: still not close-delimited
                   {"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"}},
                  {Method::Head, Method::Head, Method::Head, Method::Get},
                  {{0, 200}, {1, 200}, {2, 200}, {3, 200}});
}

TEST(ResponseFramer, NoContentAndNotModified) {
  check_responses({{"HTTP/1.1 204 No Content\r\n\r\n"},
                   {"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\nETag: \"x\"\r\n\r\n"},
                   {"HTTP/1.1 304 Not Modified\r\n\r\n"},
                   {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n!"}},
                  {Method::Delete, Method::Get, Method::Get, Method::Get},
                  {{0, 204}, {1, 304}, {2, 304}, {3, 200}});
}

TEST(ResponseFramer, ContinueThenFinal) {
  check_responses({{"HTTP/1.1 100 Continue\r\n\r\n"},
                   {"HTTP/1.1 102 Processing\r\n\r\n"},
                   {"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok"},
                   {"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"}},
                  {Method::Post, Method::Get},
                  {{0, 100, true}, {0, 102, true}, {0, 201}, {1, 200}});
}

TEST(ResponseFramer, ConnectionClose) {
  check_responses({{"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi"}},
                  {Method::Get}, {{0, 200, false, false}});
}

TEST(ResponseFramer, CloseDelimitedEndsAtFinish) {
  check_responses(
      {{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"},
       {"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nall of this until the close"}},
      {Method::Get, Method::Get}, {{0, 200}, {1, 200, false, false}},
      /*finish=*/true);
  // Without finish() the close-delimited reply is still open.
  const std::string s = "HTTP/1.1 200 OK\r\n\r\nbody";
  const RespOutcome o = run_responses(s, {s.size()}, {Method::Get}, false);
  EXPECT_TRUE(o.done.empty());
  EXPECT_TRUE(o.in_message);
}

TEST(ResponseFramer, FinishBetweenRepliesIsClean) {
  check_responses({{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"}}, {Method::Get}, {{0, 200}},
                  /*finish=*/true);
}

TEST(ResponseFramer, TruncatedReplyThenFinishIsError) {
  for (const std::string s : {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
                              "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                              "HTTP/1.1 200 OK\r\nContent-Le"}) {
    for (const auto& seg : segmentations(s.size())) {
      const RespOutcome o = run_responses(s, seg, {Method::Get}, true);
      ASSERT_TRUE(o.error) << s << " / " << describe(seg);
      EXPECT_EQ(o.error->status, 502);
      EXPECT_TRUE(o.done.empty());
    }
  }
}

TEST(ResponseFramer, InMessageTracksPartialReply) {
  ResponseFramer f;
  f.expect(Method::Get);
  std::vector<ResponseInfo> done;
  EXPECT_FALSE(f.in_message());
  ASSERT_TRUE(f.feed(bytes_of("HTTP/1.1 2"), done));
  EXPECT_TRUE(f.in_message());
  ASSERT_TRUE(f.feed(bytes_of("00 OK\r\nContent-Length: 0\r\n\r\n"), done));
  EXPECT_FALSE(f.in_message());
  EXPECT_EQ(done.size(), 1u);
  EXPECT_EQ(f.awaiting(), 0u);
}

TEST(ResponseFramer, BadReplies) {
  auto bad = [](const std::string& s, std::vector<Method> methods) {
    const RespOutcome o = run_responses(s, {s.size()}, methods, false);
    EXPECT_TRUE(o.error) << s;
    if (o.error) {
      EXPECT_EQ(o.error->status, 502) << o.error->reason;
    }
  };
  bad("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", {});  // nobody asked
  bad("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
      {Method::Get});
  bad("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
      {Method::Get});
  bad("garbage\r\n\r\n", {Method::Get});
}

// ---- error replies ----

TEST(ErrorReply, ExactBytes) {
  EXPECT_EQ(error_reply(400),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
            "Connection: close\r\n\r\nBad Request\n");
  EXPECT_EQ(error_reply(431),
            "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\n"
            "Content-Length: 32\r\nConnection: close\r\n\r\nRequest Header Fields Too Large\n");
  EXPECT_EQ(error_reply(501), error_reply(501));  // deterministic: no Date
}

TEST(ErrorReply, EveryFramerStatusFramesAsOneReply) {
  for (int status : {400, 413, 431, 501, 502, 599, 42}) {
    const std::string r = error_reply(status);
    ResponseFramer f;
    f.expect(Method::Get);
    std::vector<ResponseInfo> done;
    ASSERT_TRUE(f.feed(bytes_of(r), done)) << r;
    ASSERT_EQ(done.size(), 1u) << r;
    EXPECT_EQ(done[0].end, r.size());
    EXPECT_FALSE(done[0].keep_alive);
  }
}

}  // namespace
}  // namespace us::http
