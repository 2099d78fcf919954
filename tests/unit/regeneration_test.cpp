// The check a backup makes when it regenerates a reply the dead primary had begun: fed in pieces
// split at every byte, the Date value may differ, nothing else may.
#include "message/regeneration.hpp"

#include <gtest/gtest.h>

#include <string>

namespace us::message {
namespace {

std::string reply(const std::string& date, const std::string& body) {
  return "HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: " + date +
         "\r\nContent-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: keep-alive\r\n\r\n" + body;
}

std::span<const uint8_t> bytes(const std::string& s, size_t from = 0,
                               size_t n = std::string::npos) {
  auto v = std::string_view(s).substr(from, n);
  return {reinterpret_cast<const uint8_t*>(v.data()), v.size()};
}

// Holds the first `held` bytes of `original`, then feeds `regenerated` split at `split`.
bool check(const std::string& original, size_t held, const std::string& regenerated, size_t split) {
  Regeneration r;
  r.expected.add(bytes(original, 0, held));
  r.remaining = held;
  size_t a = std::min(split, held);
  if (!r.consume(bytes(regenerated, 0, a))) return false;
  return r.consume(bytes(regenerated, a, held - a));
}

const std::string kOld = reply("Thu, 26 Nov 2026 15:33:03 GMT", R"({"length": 777})");
const std::string kNew = reply("Thu, 26 Nov 2026 15:33:04 GMT", R"({"length": 777})");

TEST(Regeneration, OnlyTheDateDiffersAtEverySplitAndEveryHeldLength) {
  for (size_t held = 1; held <= kOld.size(); ++held)
    for (size_t split = 0; split <= held; ++split)
      ASSERT_TRUE(check(kOld, held, kNew, split)) << "held " << held << " split " << split;
}

TEST(Regeneration, BodyDifferenceIsCaughtAtEverySplit) {
  const std::string other = reply("Thu, 26 Nov 2026 15:33:04 GMT", R"({"length": 778})");
  for (size_t split = 0; split <= kOld.size(); ++split)
    EXPECT_FALSE(check(kOld, kOld.size(), other, split)) << "split " << split;
}

TEST(Regeneration, DateElsewhereIsADifference) {
  const std::string moved =
      "HTTP/1.1 200 OK\r\nServer: nginx/1.22.10\r\nDate: Thu, 26 Nov 2026 "
      "15:33:04 GMT\r\nContent-Type: application/json\r\n";
  Regeneration r;
  r.expected.add(bytes(kOld, 0, moved.size()));
  r.remaining = moved.size();
  EXPECT_FALSE(r.consume(bytes(moved)));
  EXPECT_NE(r.mismatch.find("at byte"), std::string::npos) << r.mismatch;
}

TEST(Regeneration, TailBeyondTheHeadIsCheckedByDigest) {
  std::string body(200 * 1024, 'x');
  const std::string a = reply("Thu, 26 Nov 2026 15:33:03 GMT", body);
  body[150 * 1024] = 'y';
  const std::string b = reply("Thu, 26 Nov 2026 15:33:04 GMT", body);
  EXPECT_TRUE(check(a, a.size(),
                    reply("Thu, 26 Nov 2026 15:33:09 GMT", std::string(200 * 1024, 'x')),
                    70 * 1024));
  EXPECT_FALSE(check(a, a.size(), b, 70 * 1024));
}

}  // namespace
}  // namespace us::message
