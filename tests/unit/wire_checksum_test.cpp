#include <gtest/gtest.h>

#include <array>
#include <random>
#include <span>
#include <vector>

#include "wire/checksum.hpp"

namespace us::wire {
namespace {

uint16_t load16(const std::vector<uint8_t>& b, size_t off) {
  return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}
void store16(std::vector<uint8_t>& b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}

TEST(Checksum, Rfc1071Example) {
  // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2 after folding.
  const std::array<uint8_t, 8> data{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(csum_accumulate(data) % 0xffff, 0xddf2u % 0xffff);
  EXPECT_EQ(internet_checksum(data), static_cast<uint16_t>(~0xddf2));
}

TEST(Checksum, OddLengthPadsWithZero) {
  const std::array<uint8_t, 3> odd{0x12, 0x34, 0x56};
  const std::array<uint8_t, 4> padded{0x12, 0x34, 0x56, 0x00};
  EXPECT_EQ(internet_checksum(odd), internet_checksum(padded));
}

TEST(Checksum, RealIpv4Header) {
  // 192.168.0.104 -> 192.168.0.1, TCP, checksum 0x9cbc.
  std::vector<uint8_t> h{0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06,
                         0x00, 0x00, 0xc0, 0xa8, 0x00, 0x68, 0xc0, 0xa8, 0x00, 0x01};
  EXPECT_EQ(internet_checksum(h), 0x9cbc);
  store16(h, 10, 0x9cbc);
  EXPECT_EQ(internet_checksum(h), 0);
}

TEST(Checksum, ChainedAccumulateEqualsOneShot) {
  auto rng = [gen = std::mt19937(7)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 200; ++i) {
    std::vector<uint8_t> d(rng() % 200 + 1);
    for (auto& x : d) x = static_cast<uint8_t>(rng());
    size_t cut = (rng() % d.size()) & ~size_t{1};  // even split, odd tail allowed
    uint32_t s = csum_accumulate(std::span(d).first(cut));
    s = csum_accumulate(std::span(d).subspan(cut), s);
    ASSERT_EQ(csum_fold(s), internet_checksum(d));
  }
}

TEST(Checksum, LargeBufferDoesNotLoseCarries) {
  std::vector<uint8_t> d(65535, 0xff);
  // 0xffff repeated is negative zero in one's complement; the odd tail adds 0xff00.
  EXPECT_EQ(internet_checksum(d), static_cast<uint16_t>(~0xff00));
}

// Incremental updates must agree with full recomputation bit for bit, not just modulo 0xffff.
TEST(Checksum, Replace16MatchesFullRecomputation) {
  auto rng = [gen = std::mt19937(99)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> d(2 * (rng() % 30 + 3));
    for (auto& x : d) x = static_cast<uint8_t>(rng());
    if (i % 10 == 0) {
      // Near-zero data, but never all zero after the change: for an all-zero buffer the full
      // computation gives 0xffff, eqn. 3 gives 0 (RFC 1624 §3); no IP or TCP header is all zero.
      std::fill(d.begin(), d.end(), 0);
      d[2] = 1;
      d.back() = 1;
    }
    store16(d, 0, 0);
    store16(d, 0, internet_checksum(d));
    size_t w = 2 * (1 + rng() % (d.size() / 2 - 1));
    uint16_t old_v = load16(d, w);
    uint16_t new_v = static_cast<uint16_t>(i % 7 == 0 ? 0 : i % 11 == 0 ? 0xffff : rng());
    uint16_t inc = csum_replace16(load16(d, 0), old_v, new_v);
    store16(d, w, new_v);
    store16(d, 0, 0);
    ASSERT_EQ(inc, internet_checksum(d)) << "iteration " << i;
  }
}

TEST(Checksum, Replace32MatchesFullRecomputation) {
  auto rng = [gen = std::mt19937(100)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> d(4 * (rng() % 15 + 2));
    for (auto& x : d) x = static_cast<uint8_t>(rng());
    store16(d, 0, 0);
    store16(d, 0, internet_checksum(d));
    size_t w = 4 * (1 + rng() % (d.size() / 4 - 1));
    uint32_t old_v = (uint32_t{load16(d, w)} << 16) | load16(d, w + 2);
    uint32_t new_v = i % 5 == 0 ? 0u : i % 13 == 0 ? 0xffffffffu : static_cast<uint32_t>(rng());
    uint16_t inc = csum_replace32(load16(d, 0), old_v, new_v);
    store16(d, w, static_cast<uint16_t>(new_v >> 16));
    store16(d, w + 2, static_cast<uint16_t>(new_v));
    store16(d, 0, 0);
    ASSERT_EQ(inc, internet_checksum(d)) << "iteration " << i;
  }
}

TEST(Checksum, ReplaceWithSameValueIsIdentity) {
  EXPECT_EQ(csum_replace16(0x1234, 0xabcd, 0xabcd), 0x1234);
  EXPECT_EQ(csum_replace32(0x1234, 0xdeadbeef, 0xdeadbeef), 0x1234);
}

// The definition, one big-endian 16-bit word at a time: what the word-at-a-time sum must equal.
uint32_t reference_accumulate(std::span<const uint8_t> d, uint32_t sum) {
  uint64_t acc = sum;
  size_t i = 0;
  for (; i + 1 < d.size(); i += 2) acc += (uint32_t{d[i]} << 8) | d[i + 1];
  if (i < d.size()) acc += uint32_t{d[i]} << 8;
  while (acc >> 16) acc = (acc & 0xffff) + (acc >> 16);
  return static_cast<uint32_t>(acc);
}

TEST(Checksum, WordAtATimeEqualsTheDefinitionAtEveryLengthAndAlignment) {
  std::mt19937 rng(7);
  std::vector<uint8_t> buf(4000);
  for (auto& b : buf) b = static_cast<uint8_t>(rng());
  for (size_t len = 0; len < 80; ++len)
    for (size_t off = 0; off < 8; ++off)
      for (uint32_t start : {0u, 1u, 0xfffeu, 0xffffu, 0x1234u}) {
        std::span<const uint8_t> d(buf.data() + off, len);
        ASSERT_EQ(csum_accumulate(d, start), reference_accumulate(d, start))
            << "len " << len << " off " << off << " start " << start;
      }
  for (int i = 0; i < 2000; ++i) {
    size_t off = rng() % 16, len = rng() % (buf.size() - 16);
    uint32_t start = rng() & 0xffff;
    std::span<const uint8_t> d(buf.data() + off, len);
    ASSERT_EQ(csum_accumulate(d, start), reference_accumulate(d, start)) << len;
  }
  // Sums that fold to 0xffff (one's-complement zero) and all-ones data.
  std::vector<uint8_t> ones(1500, 0xff);
  EXPECT_EQ(csum_accumulate(ones), reference_accumulate(ones, 0));
  std::vector<uint8_t> zeros(1500, 0);
  EXPECT_EQ(csum_accumulate(zeros), 0u);
  EXPECT_EQ(internet_checksum(zeros), 0xffff);
}

}  // namespace
}  // namespace us::wire
