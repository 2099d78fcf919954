// A latency histogram with log-spaced buckets (about 9% wide): constant memory, O(1) add,
// percentiles good enough for "where does the time go" (docs/PERFORMANCE.md).
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace us {

class Histogram {
 public:
  struct Summary {
    uint64_t count = 0;
    double mean = 0, p50 = 0, p99 = 0, max = 0;
  };

  void add(double us) {
    if (!(us >= 0)) us = 0;
    ++buckets_[index(us)];
    ++count_;
    sum_ += us;
    max_ = std::max(max_, us);
  }
  void add(std::chrono::steady_clock::duration d) {
    add(std::chrono::duration<double, std::micro>(d).count());
  }
  void reset() { *this = Histogram{}; }

  uint64_t count() const { return count_; }
  double sum() const { return sum_; }  // microseconds
  // Calls fn(upper_edge_us, count) for each non-empty bucket, in increasing order: every
  // observation counted there was below upper_edge_us (for a Prometheus histogram's buckets).
  template <typename Fn>
  void for_each_bucket(Fn&& fn) const {
    for (size_t i = 0; i < buckets_.size(); ++i)
      if (buckets_[i] != 0) fn(upper(i), buckets_[i]);
  }

  Summary summary() const {
    Summary s;
    s.count = count_;
    if (count_ == 0) return s;
    s.mean = sum_ / static_cast<double>(count_);
    s.p50 = percentile(0.50);
    s.p99 = percentile(0.99);
    s.max = max_;
    return s;
  }

 private:
  static constexpr int kPerOctave = 8;
  static constexpr int kBuckets = 256;
  static size_t index(double us) {
    double i = std::floor(kPerOctave * std::log2(us + 1.0));
    return static_cast<size_t>(std::clamp(i, 0.0, double{kBuckets - 1}));
  }
  // The upper edge of bucket i: a percentile is never under-reported.
  static double upper(size_t i) { return std::exp2(static_cast<double>(i + 1) / kPerOctave) - 1.0; }
  double percentile(double q) const {
    auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(count_)));
    uint64_t seen = 0;
    for (size_t i = 0; i < buckets_.size(); ++i) {
      seen += buckets_[i];
      if (seen >= rank && seen > 0) return std::min(upper(i), max_);
    }
    return max_;
  }

  std::array<uint64_t, kBuckets> buckets_{};
  uint64_t count_ = 0;
  double sum_ = 0;
  double max_ = 0;
};

}  // namespace us
