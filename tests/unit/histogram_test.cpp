#include "common/histogram.hpp"

#include <gtest/gtest.h>

namespace us {
namespace {

TEST(Histogram, EmptyIsZero) {
  Histogram h;
  auto s = h.summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p99, 0);
}

TEST(Histogram, PercentilesWithinBucketWidth) {
  Histogram h;
  for (int i = 1; i <= 1000; ++i) h.add(static_cast<double>(i));
  auto s = h.summary();
  EXPECT_EQ(s.count, 1000u);
  EXPECT_DOUBLE_EQ(s.mean, 500.5);
  EXPECT_DOUBLE_EQ(s.max, 1000);
  // Log buckets 2^(1/8) wide: the reported value is the bucket's upper edge, never below.
  EXPECT_GE(s.p50, 500);
  EXPECT_LE(s.p50, 500 * 1.1);
  EXPECT_GE(s.p99, 990);
  EXPECT_LE(s.p99, 1000);
}

TEST(Histogram, ResetForgets) {
  Histogram h;
  h.add(5.0);
  h.reset();
  EXPECT_EQ(h.summary().count, 0u);
}

}  // namespace
}  // namespace us
