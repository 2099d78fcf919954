// Request head edits (src/http/head_edit.hpp): the positions the framer reports for a head's end
// and for the fields to strip, checked at every segmentation (whole, two pieces at every byte,
// byte by byte), and the edited head they give.
#include "http/head_edit.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/framer.hpp"

namespace us::http {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

const std::vector<std::string> kStrip = {"request-id", "x-real-ip"};

// Frames `stream` cut into `seg`; returns the requests completed.
std::vector<RequestInfo> frame(std::string_view stream, const std::vector<size_t>& seg) {
  RequestFramer f(RequestLimits{UINT64_MAX, kStrip});
  std::vector<RequestInfo> done;
  size_t pos = 0;
  for (size_t len : seg) {
    auto r = f.feed(bytes_of(stream.substr(pos, len)), done);
    EXPECT_TRUE(r.ok()) << r.error().reason;
    pos += len;
  }
  return done;
}

// Frames `stream` every way it can be cut, checks every way agrees, and returns each request's
// head edited with `fields` added, as the message layer sends it.
std::vector<std::string> edited_heads(std::string_view stream, std::string_view fields = "") {
  const auto whole = frame(stream, {stream.size()});
  for (size_t k = 0; k <= stream.size(); ++k)
    EXPECT_EQ(frame(stream, {k, stream.size() - k}), whole) << "split at " << k;
  EXPECT_EQ(frame(stream, std::vector<size_t>(stream.size(), 1)), whole) << "byte by byte";
  std::vector<std::string> out;
  for (const auto& ri : whole) {
    EXPECT_GT(ri.head_end, ri.begin);
    std::string head(stream.substr(ri.begin, ri.head_end - ri.begin));
    std::string edited;
    append_edited_head(ri, head, fields, edited);
    out.push_back(edited);
  }
  return out;
}

TEST(HeadEdit, NothingToStrip_FieldsGoBeforeTheBlankLine) {
  const std::string req = "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n";
  auto ri = frame(req, {req.size()});
  ASSERT_EQ(ri.size(), 1u);
  EXPECT_EQ(ri[0].head_end, req.size());
  EXPECT_EQ(ri[0].fields_end, req.size() - 2);
  EXPECT_TRUE(ri[0].strip.empty());
  EXPECT_EQ(edited_heads(req, "Request-Id: 7\r\n"),
            std::vector<std::string>{
                "GET /a HTTP/1.1\r\nHost: x\r\nAccept: */*\r\nRequest-Id: 7\r\n\r\n"});
  EXPECT_EQ(edited_heads(req), std::vector<std::string>{req});  // no fields: unchanged
}

TEST(HeadEdit, ClientsOwnIdRemoved_AnyCaseAnyPlace) {
  const std::string req =
      "POST /pay HTTP/1.1\r\nrequest-ID: forged-1\r\nHost: x\r\nX-Real-IP: 1.2.3.4\r\n"
      "Content-Length: 3\r\nREQUEST-ID:forged-2\r\n\r\nabc";
  auto ri = frame(req, {req.size()});
  ASSERT_EQ(ri.size(), 1u);
  ASSERT_EQ(ri[0].strip.size(), 3u);
  EXPECT_EQ(req.substr(ri[0].strip[0].begin, ri[0].strip[0].end - ri[0].strip[0].begin),
            "request-ID: forged-1\r\n");
  EXPECT_EQ(edited_heads(req, "Request-Id: ours\r\n"),
            std::vector<std::string>{"POST /pay HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
                                     "Request-Id: ours\r\n\r\n"});
}

// A name is matched whole: longer or shorter names that share a prefix stay.
TEST(HeadEdit, OnlyTheExactNameIsStripped) {
  const std::string req =
      "GET / HTTP/1.1\r\nRequest-Id2: a\r\nRequest-I: b\r\nX-Request-Id: c\r\n\r\n";
  EXPECT_EQ(edited_heads(req), std::vector<std::string>{req});
}

// Bare LF line ends (http-parser accepts them) and a continuation line (obs-fold) that belongs to
// the stripped field.
TEST(HeadEdit, BareLfAndFoldedValue) {
  const std::string req = "GET / HTTP/1.1\nRequest-Id: a\n  folded\nHost: x\n\n";
  auto ri = frame(req, {req.size()});
  ASSERT_EQ(ri.size(), 1u);
  EXPECT_EQ(ri[0].fields_end, req.size() - 1);
  EXPECT_EQ(edited_heads(req, "A: 1\r\n"),
            std::vector<std::string>{"GET / HTTP/1.1\nHost: x\nA: 1\r\n\n"});
}

TEST(HeadEdit, LastFieldStripped_EmptyValue) {
  const std::string req = "GET / HTTP/1.1\r\nHost: x\r\nRequest-Id:\r\n\r\n";
  EXPECT_EQ(edited_heads(req, "A: 1\r\n"),
            std::vector<std::string>{"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\n\r\n"});
  const std::string first_empty = "GET / HTTP/1.1\r\nRequest-Id:\r\nHost: x\r\n\r\n";
  EXPECT_EQ(edited_heads(first_empty),
            std::vector<std::string>{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"});
}

TEST(HeadEdit, NoFieldsAtAll) {
  const std::string req = "GET / HTTP/1.0\r\n\r\n";
  EXPECT_EQ(edited_heads(req, "A: 1\r\n"),
            std::vector<std::string>{"GET / HTTP/1.0\r\nA: 1\r\n\r\n"});
}

// Trailers are body bytes: not edited (docs/MESSAGE_LAYER.md says why that is safe).
TEST(HeadEdit, ChunkedTrailersLeftAlone) {
  const std::string req =
      "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nRequest-Id: t\r\n\r\n";
  auto ri = frame(req, {req.size()});
  ASSERT_EQ(ri.size(), 1u);
  EXPECT_TRUE(ri[0].strip.empty());
  EXPECT_EQ(ri[0].head_end, req.find("\r\n\r\n") + 4);
}

// Pipelined requests (with blank lines between them): each has its own positions.
TEST(HeadEdit, PipelinedRequestsEachEdited) {
  const std::string a = "GET /a HTTP/1.1\r\nRequest-Id: x\r\n\r\n";
  const std::string b = "POST /b HTTP/1.1\r\nContent-Length: 2\r\nx-real-ip: y\r\n\r\nhi";
  const std::string stream = a + "\r\n" + b;
  auto ri = frame(stream, {stream.size()});
  ASSERT_EQ(ri.size(), 2u);
  EXPECT_EQ(ri[1].begin, a.size() + 2);
  EXPECT_EQ(ri[1].head_end, stream.size() - 2);
  EXPECT_EQ(edited_heads(stream, "F: v\r\n"),
            (std::vector<std::string>{"GET /a HTTP/1.1\r\nF: v\r\n\r\n",
                                      "POST /b HTTP/1.1\r\nContent-Length: 2\r\nF: v\r\n\r\n"}));
}

// The head's end is known as soon as the headers are, before the body: the request in progress.
TEST(HeadEdit, PartialRequestKnowsItsHead) {
  const std::string head = "POST / HTTP/1.1\r\nContent-Length: 10\r\nRequest-Id: q\r\n\r\n";
  RequestFramer f(RequestLimits{UINT64_MAX, kStrip});
  std::vector<RequestInfo> done;
  ASSERT_TRUE(f.feed(bytes_of(head + "12345"), done).ok());
  ASSERT_TRUE(f.headers_complete());
  EXPECT_EQ(f.partial()->head_end, head.size());
  EXPECT_EQ(f.partial()->fields_end, head.size() - 2);
  ASSERT_EQ(f.partial()->strip.size(), 1u);
  EXPECT_EQ(f.partial()->strip[0].end, head.size() - 2);
}

// Without a strip list (the default) nothing is reported, but the head's end still is.
TEST(HeadEdit, DefaultFramerReportsNoStrip) {
  const std::string req = "GET / HTTP/1.1\r\nRequest-Id: x\r\n\r\n";
  RequestFramer f;
  std::vector<RequestInfo> done;
  ASSERT_TRUE(f.feed(bytes_of(req), done).ok());
  ASSERT_EQ(done.size(), 1u);
  EXPECT_TRUE(done[0].strip.empty());
  EXPECT_EQ(done[0].head_end, req.size());
}

TEST(HeadEdit, FieldNames) {
  EXPECT_TRUE(is_field_name("Request-Id"));
  EXPECT_TRUE(is_field_name("X_Id.2!#$%&'*+^`|~"));
  EXPECT_FALSE(is_field_name(""));
  EXPECT_FALSE(is_field_name("Request Id"));
  EXPECT_FALSE(is_field_name("Id:"));
  EXPECT_FALSE(is_field_name("Id\r\n"));
  EXPECT_FALSE(is_field_name("(id)"));
  EXPECT_EQ(lower_case("X-Real-IP"), "x-real-ip");
}

}  // namespace
}  // namespace us::http
