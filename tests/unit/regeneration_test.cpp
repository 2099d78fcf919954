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

TEST(Regeneration, TailBeyondTheHeadIsCheckedByHash) {
  std::string body(200 * 1024, 'x');
  const std::string a = reply("Thu, 26 Nov 2026 15:33:03 GMT", body);
  body[150 * 1024] = 'y';
  const std::string b = reply("Thu, 26 Nov 2026 15:33:04 GMT", body);
  EXPECT_TRUE(check(a, a.size(),
                    reply("Thu, 26 Nov 2026 15:33:09 GMT", std::string(200 * 1024, 'x')),
                    70 * 1024));
  EXPECT_FALSE(check(a, a.size(), b, 70 * 1024));
}

// The tail's hash does not depend on how the bytes were cut: the backup mirrors a reply in the
// pieces the replication channel brings, and regenerates it in the pieces the server writes.
TEST(Regeneration, TailHashIsTheSameForAnyCutting) {
  std::string body(300 * 1024 + 7, 'x');
  for (size_t i = 0; i < body.size(); ++i) body[i] = static_cast<char>('a' + (i * 7919) % 26);
  const std::string a = reply("Thu, 26 Nov 2026 15:33:03 GMT", body);
  const std::string b = reply("Thu, 26 Nov 2026 15:33:09 GMT", body);
  for (size_t piece : {1u, 7u, 15u, 16u, 17u, 4099u, 65536u}) {
    Regeneration r;
    r.expected.add(bytes(a));  // all at once
    r.remaining = a.size();
    bool ok = true;
    for (size_t at = 0; at < b.size() && ok; at += piece) ok = r.consume(bytes(b, at, piece));
    EXPECT_TRUE(ok) << "pieces of " << piece << ": " << r.mismatch;
  }
}

TEST(StreamHash, AnyFlippedBitOrExtraByteChangesIt) {
  std::string s(5000, '\0');
  for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>(i * 31);
  StreamHash whole;
  whole.add(bytes(s));
  for (size_t at : {0u, 15u, 16u, 2500u, 4999u}) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string t = s;
      t[at] = static_cast<char>(t[at] ^ (1 << bit));
      StreamHash h;
      h.add(bytes(t));
      EXPECT_NE(h.value(), whole.value()) << "byte " << at << " bit " << bit;
    }
  }
  StreamHash longer;
  longer.add(bytes(s + std::string(1, '\0')));
  EXPECT_NE(longer.value(), whole.value());
  StreamHash again;  // the same key for every hash in the process
  again.add(bytes(s));
  EXPECT_EQ(again.value(), whole.value());
}

}  // namespace
}  // namespace us::message
