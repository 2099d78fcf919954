// The Prometheus text writer (src/metrics/exposition.hpp): HELP and TYPE lines, escaping, value
// spelling and cumulative histogram buckets, checked to the byte.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "metrics/exposition.hpp"

namespace us::metrics {
namespace {

TEST(Exposition, FamilyHasHelpThenTypeThenSamples) {
  Exposition e;
  e.counter("understudy_requests_total", "HTTP requests read.", 42);
  e.gauge("understudy_front", "1 while front.", 1);
  EXPECT_EQ(e.text(),
            "# HELP understudy_requests_total HTTP requests read.\n"
            "# TYPE understudy_requests_total counter\n"
            "understudy_requests_total 42\n"
            "# HELP understudy_front 1 while front.\n"
            "# TYPE understudy_front gauge\n"
            "understudy_front 1\n");
}

TEST(Exposition, LabelledSamplesInOrder) {
  Exposition e;
  e.family("understudy_mode", Type::Gauge, "Mode.");
  e.sample(uint64_t{0}, {{"mode", "starting"}});
  e.sample(uint64_t{1}, {{"mode", "duplex"}});
  e.family("understudy_refused_input_total", Type::Counter, "Refused.");
  e.sample(uint64_t{7}, {{"layer", "packet"}, {"reason", "malformed"}});
  EXPECT_EQ(e.text(),
            "# HELP understudy_mode Mode.\n"
            "# TYPE understudy_mode gauge\n"
            "understudy_mode{mode=\"starting\"} 0\n"
            "understudy_mode{mode=\"duplex\"} 1\n"
            "# HELP understudy_refused_input_total Refused.\n"
            "# TYPE understudy_refused_input_total counter\n"
            "understudy_refused_input_total{layer=\"packet\",reason=\"malformed\"} 7\n");
}

TEST(Exposition, LabelValuesEscapeBackslashQuoteAndNewline) {
  EXPECT_EQ(Exposition::escape_label_value(R"(a\b"c)"
                                           "\n"
                                           "d"),
            R"(a\\b\"c\nd)");
  EXPECT_EQ(Exposition::escape_label_value("plain: {x=1}, 'y'"), "plain: {x=1}, 'y'");
  Exposition e;
  e.family("x", Type::Gauge, "h");
  e.sample(uint64_t{1}, {{"path", "C:\\tmp\n\"q\""}});
  EXPECT_EQ(e.text(), "# HELP x h\n# TYPE x gauge\nx{path=\"C:\\\\tmp\\n\\\"q\\\"\"} 1\n");
}

// HELP text escapes backslash and line feed only: a double quote stays as it is.
TEST(Exposition, HelpEscapesBackslashAndNewlineOnly) {
  EXPECT_EQ(Exposition::escape_help("a \"b\" \\ c\nd"), "a \"b\" \\\\ c\\nd");
  Exposition e;
  e.gauge("g", "two\nlines", 0);
  EXPECT_EQ(e.text(), "# HELP g two\\nlines\n# TYPE g gauge\ng 0\n");
}

TEST(Exposition, ValuesSpelledAsTheFormatWants) {
  EXPECT_EQ(Exposition::format_value(0), "0");
  EXPECT_EQ(Exposition::format_value(3), "3");
  EXPECT_EQ(Exposition::format_value(0.25), "0.25");
  EXPECT_EQ(Exposition::format_value(1e-5), "1e-05");
  EXPECT_EQ(Exposition::format_value(-2.5), "-2.5");
  EXPECT_EQ(Exposition::format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(Exposition::format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(Exposition::format_value(std::nan("")), "NaN");
  // Shortest form that reads back the same value.
  EXPECT_EQ(std::stod(Exposition::format_value(0.1 + 0.2)), 0.1 + 0.2);
  // Counters are written as integers, exactly, beyond a double's 53 bits.
  Exposition e;
  e.counter("c_total", "h", 18446744073709551615ull);
  EXPECT_NE(e.text().find("c_total 18446744073709551615\n"), std::string::npos) << e.text();
}

TEST(Exposition, HistogramBucketsAreCumulativeWithInfAndCount) {
  Exposition e;
  e.family("understudy_request_seconds", Type::Histogram, "Request time.");
  e.histogram({.bounds = {0.001, 0.01, 0.1}, .counts = {2, 0, 5, 1}, .sum = 0.75});
  EXPECT_EQ(e.text(),
            "# HELP understudy_request_seconds Request time.\n"
            "# TYPE understudy_request_seconds histogram\n"
            "understudy_request_seconds_bucket{le=\"0.001\"} 2\n"
            "understudy_request_seconds_bucket{le=\"0.01\"} 2\n"
            "understudy_request_seconds_bucket{le=\"0.1\"} 7\n"
            "understudy_request_seconds_bucket{le=\"+Inf\"} 8\n"
            "understudy_request_seconds_sum 0.75\n"
            "understudy_request_seconds_count 8\n");
}

TEST(Exposition, HistogramLabelsComeBeforeLe) {
  Exposition e;
  e.family("h_seconds", Type::Histogram, "h");
  e.histogram({.bounds = {1}, .counts = {0, 0}, .sum = 0}, {{"node", "a"}});
  EXPECT_EQ(e.text(),
            "# HELP h_seconds h\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{node=\"a\",le=\"1\"} 0\n"
            "h_seconds_bucket{node=\"a\",le=\"+Inf\"} 0\n"
            "h_seconds_sum{node=\"a\"} 0\n"
            "h_seconds_count{node=\"a\"} 0\n");
}

TEST(Exposition, NameRules) {
  EXPECT_TRUE(Exposition::valid_metric_name("understudy_mode"));
  EXPECT_TRUE(Exposition::valid_metric_name("a:b_c9"));
  EXPECT_FALSE(Exposition::valid_metric_name(""));
  EXPECT_FALSE(Exposition::valid_metric_name("9lives"));
  EXPECT_FALSE(Exposition::valid_metric_name("has-dash"));
  EXPECT_FALSE(Exposition::valid_metric_name("has space"));
  EXPECT_TRUE(Exposition::valid_label_name("reason"));
  EXPECT_FALSE(Exposition::valid_label_name("a:b"));  // colons are for metric names only
  EXPECT_FALSE(Exposition::valid_label_name("__name__"));
  EXPECT_FALSE(Exposition::valid_label_name("0x"));
}

TEST(Exposition, TakeEmptiesTheWriter) {
  Exposition e;
  e.gauge("g", "h", 1);
  std::string t = e.take();
  EXPECT_EQ(t, "# HELP g h\n# TYPE g gauge\ng 1\n");
  EXPECT_EQ(e.text(), "");
}

}  // namespace
}  // namespace us::metrics
