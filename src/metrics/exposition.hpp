// The Prometheus text exposition format, version 0.0.4: families of samples, each family
// introduced by its HELP and TYPE lines. No I/O: the node fills a writer per scrape and
// metrics/server sends the text. docs/METRICS.md lists what the node exposes.
//
// Why our own writer rather than prometheus-cpp (Debian's prometheus-cpp-dev): its exposer serves
// HTTP from civetweb threads, and the daemon is one seccomp-filtered thread whose state is only
// safe to read inside its event loop. The format itself is a few rules, checked by
// tests/unit/metrics_exposition_test.cpp and by `promtool check metrics` in the lab test.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace us::metrics {

enum class Type { Counter, Gauge, Histogram };
const char* to_string(Type);

using Label = std::pair<std::string_view, std::string_view>;
using Labels = std::initializer_list<Label>;

// One histogram's observations. counts[i] counts those in (bounds[i-1], bounds[i]] (the first:
// at most bounds[0]); counts has one more entry than bounds, the observations above every bound.
// The writer makes the buckets cumulative and adds le="+Inf" and _count from the total.
struct HistogramData {
  std::vector<double> bounds;  // increasing, in base units (seconds)
  std::vector<uint64_t> counts;
  double sum = 0;
};

class Exposition {
 public:
  // Starts a family: its HELP and TYPE lines. Names are the node's own, so a malformed one, or a
  // family named twice, is a programming error (asserted). A counter's name ends in _total.
  void family(std::string_view name, Type type, std::string_view help);
  // A sample of the family begun last (not a histogram).
  void sample(double value, Labels labels = {});
  void sample(uint64_t value, Labels labels = {});
  // The samples of the histogram family begun last: name_bucket{...,le="..."}, name_sum,
  // name_count. `labels` must not contain "le".
  void histogram(const HistogramData& h, Labels labels = {});

  // Shorthands: a family with one unlabelled sample.
  void counter(std::string_view name, std::string_view help, uint64_t value);
  void gauge(std::string_view name, std::string_view help, double value);

  const std::string& text() const { return out_; }
  std::string take() {  // and starts over empty (the family names stay taken)
    std::string t;
    t.swap(out_);
    return t;
  }

  // The format's rules, for the asserts and the tests.
  static bool valid_metric_name(std::string_view name);
  static bool valid_label_name(std::string_view name);
  // Label values escape backslash, double quote and line feed; HELP text backslash and line feed.
  static std::string escape_label_value(std::string_view v);
  static std::string escape_help(std::string_view v);
  // A sample value: integers exactly, others in the shortest form that reads back the same;
  // NaN, +Inf, -Inf spelled as the format wants.
  static std::string format_value(double v);

 private:
  void line(std::string_view suffix, Labels labels, std::string_view extra_name,
            std::string_view extra_value, std::string_view value);

  std::string out_;
  std::string name_;
  Type type_ = Type::Gauge;
  std::set<std::string, std::less<>> families_;
};

}  // namespace us::metrics
