#include <gtest/gtest.h>

#include <random>

#include "wire/seq.hpp"

namespace us::wire {
namespace {

static_assert(SeqNum(0xFFFFFFF0u) + 0x20 == SeqNum(0x10));
static_assert(SeqNum(0x10) - SeqNum(0xFFFFFFF0u) == 0x20);
static_assert(SeqNum(0xFFFFFFF0u) < SeqNum(0xFFFFFFF0u) + 0x20);

TEST(SeqNum, AdditionWrapsAt2To32) {
  SeqNum a(0xFFFFFFF0u);
  SeqNum b = a + 0x20;
  EXPECT_EQ(b.raw(), 0x10u);
  EXPECT_EQ((b - 0x20).raw(), 0xFFFFFFF0u);
  SeqNum c = a;
  c += 0x20;
  EXPECT_EQ(c, b);
  c -= 0x20;
  EXPECT_EQ(c, a);
}

TEST(SeqNum, ComparesAcrossTheWrap) {
  SeqNum a(0xFFFFFFF0u);
  SeqNum b = a + 0x20;
  EXPECT_TRUE(b > a);
  EXPECT_TRUE(b >= a);
  EXPECT_TRUE(a < b);
  EXPECT_TRUE(a <= b);
  EXPECT_FALSE(a > b);
  EXPECT_FALSE(b < a);
  EXPECT_NE(a, b);
  EXPECT_TRUE(a <= a && a >= a && !(a < a) && !(a > a));
}

TEST(SeqNum, SignedDistance) {
  SeqNum a(0xFFFFFFF0u);
  SeqNum b(0x10);
  EXPECT_EQ(b - a, 0x20);
  EXPECT_EQ(a - b, -0x20);
  EXPECT_EQ(a - a, 0);
  // Half the space away is the edge of the defined order.
  EXPECT_EQ(SeqNum(0x80000000u) - SeqNum(0), INT32_MIN);
  EXPECT_TRUE(SeqNum(0x7FFFFFFFu) > SeqNum(0));
  EXPECT_TRUE(SeqNum(0x80000001u) < SeqNum(0));
}

TEST(SeqNum, MaxMinAcrossTheWrap) {
  SeqNum a(0xFFFFFFFFu);
  SeqNum b(0x00000005u);
  EXPECT_EQ(SeqNum::max(a, b), b);
  EXPECT_EQ(SeqNum::min(a, b), a);
  EXPECT_EQ(SeqNum::max(b, a), b);
  EXPECT_EQ(SeqNum::min(b, a), a);
}

TEST(SeqNum, RandomPairsOrderByDistance) {
  auto rng = [gen = std::mt19937(1234)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 10000; ++i) {
    SeqNum a(rng());
    uint32_t d = rng() % 0x7FFFFFFFu + 1;  // 1 .. 2^31-1
    SeqNum b = a + d;
    ASSERT_TRUE(a < b) << a.raw() << " " << d;
    ASSERT_TRUE(b > a);
    ASSERT_EQ(b - a, static_cast<int32_t>(d));
    ASSERT_EQ(SeqNum::max(a, b), b);
  }
}

TEST(SeqOffset, BetweenApplyUnapplyAcrossTheWrap) {
  SeqNum kernel_isn(0xFFFFFF00u);
  SeqNum client_isn(0x00000100u);
  SeqOffset off = SeqOffset::between(client_isn, kernel_isn);
  EXPECT_EQ(off.v, 0x200u);
  EXPECT_EQ(off.apply(kernel_isn), client_isn);
  EXPECT_EQ(off.unapply(client_isn), kernel_isn);
  // A byte far into the stream, past the kernel's wrap.
  SeqNum k = kernel_isn + 0x1000;
  EXPECT_EQ(off.apply(k).raw(), 0x1100u);
  EXPECT_EQ(off.unapply(off.apply(k)), k);
  EXPECT_EQ(off.inverse().apply(client_isn), kernel_isn);
}

TEST(SeqOffset, RandomRoundTrips) {
  auto rng = [gen = std::mt19937(42)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 10000; ++i) {
    SeqNum to(rng());
    SeqNum from(rng());
    SeqOffset off = SeqOffset::between(to, from);
    ASSERT_EQ(off.apply(from), to);
    ASSERT_EQ(off.unapply(to), from);
    SeqNum x(rng());
    ASSERT_EQ(off.unapply(off.apply(x)), x);
    ASSERT_EQ(off.apply(off.unapply(x)), x);
    ASSERT_EQ(off.inverse().apply(x), off.unapply(x));
    // Offsets preserve distances, so order within a window survives translation.
    uint32_t d = rng() % 0x10000u;
    ASSERT_EQ(off.apply(x + d) - off.apply(x), static_cast<int32_t>(d));
  }
}

TEST(SeqOffset, DefaultIsIdentity) {
  SeqOffset off;
  EXPECT_EQ(off.apply(SeqNum(7)), SeqNum(7));
  EXPECT_EQ(off.unapply(SeqNum(7)), SeqNum(7));
}

}  // namespace
}  // namespace us::wire
