// The node's values as Prometheus metrics (node::status_metrics, docs/METRICS.md): one HELP and
// one TYPE per family before its samples, the mode and role as 0/1 gauges, the timing histograms
// in seconds with cumulative buckets, and every family documented.
#include <gtest/gtest.h>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "node/status.hpp"

namespace us::node {
namespace {

struct Parsed {
  std::map<std::string, std::string> type;  // family -> counter/gauge/histogram
  std::map<std::string, double> samples;    // "name{labels}" -> value
  std::vector<std::string> order;           // families in order
  std::vector<std::string> problems;
};

// A small reader of the format, strict about what the writer promises.
Parsed parse(const std::string& text) {
  Parsed p;
  std::istringstream in(text);
  std::string line, help_for;
  const std::regex sample(R"(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+))");
  while (std::getline(in, line)) {
    if (line.starts_with("# HELP ")) {
      help_for = line.substr(7, line.find(' ', 7) - 7);
      continue;
    }
    if (line.starts_with("# TYPE ")) {
      auto rest = line.substr(7);
      auto name = rest.substr(0, rest.find(' '));
      if (name != help_for) p.problems.push_back("TYPE without HELP just before: " + line);
      if (p.type.contains(name)) p.problems.push_back("family twice: " + name);
      p.type[name] = rest.substr(rest.find(' ') + 1);
      p.order.push_back(name);
      continue;
    }
    std::smatch m;
    if (!std::regex_match(line, m, sample)) {
      p.problems.push_back("not a sample: " + line);
      continue;
    }
    std::string name = m[1];
    const std::string& fam = p.order.empty() ? "" : p.order.back();
    bool ok = name == fam;
    if (p.type[fam] == "histogram")
      ok = name == fam + "_bucket" || name == fam + "_sum" || name == fam + "_count";
    if (!ok) p.problems.push_back("sample outside its family " + fam + ": " + line);
    p.samples[name + std::string(m[2])] = std::stod(m[3]);
  }
  return p;
}

StatusInputs inputs() {
  StatusInputs in;
  in.role = Role::Backup;
  in.mode = Mode::Simplex;
  in.front = true;
  in.connections = 5;
  in.connections_unprotected = 2;
  in.failovers = 1;
  in.takeovers = 1;
  in.packet.client_packets = 100;
  in.packet.relayed = 40;
  in.packet.dropped_bad_checksum = 3;
  in.message.requests = 9;
  in.message.bad_requests = 2;
  in.message.request_bytes = 1000;
  in.message.reply_bytes = 5000;
  in.rejected_datagrams = 4;
  in.replication_unacked_bytes = 2048;
  in.replication_lag_seconds = 0.004;
  in.uptime_ms = 1500;
  in.hook_events_sent = 6;
  in.hook_events_dropped = 1;
  return in;
}

struct Fixture {
  Histogram packet, request, server, replication;
  std::string text() const {
    return status_metrics(inputs(), {packet, request, server, replication});
  }
};

TEST(StatusMetrics, EveryFamilyHasHelpAndTypeAndItsSamplesFollow) {
  Fixture f;
  auto p = parse(f.text());
  EXPECT_TRUE(p.problems.empty()) << ::testing::PrintToString(p.problems);
  for (const auto& [name, type] : p.type) {
    EXPECT_TRUE(name.starts_with("understudy_")) << name;
    EXPECT_TRUE(type != "counter" || name.ends_with("_total")) << name;
  }
}

TEST(StatusMetrics, ModeAndRoleAreOneHotGauges) {
  Fixture f;
  auto p = parse(f.text());
  EXPECT_EQ(p.type["understudy_mode"], "gauge");
  EXPECT_EQ(p.samples["understudy_mode{mode=\"simplex\"}"], 1);
  EXPECT_EQ(p.samples["understudy_mode{mode=\"duplex\"}"], 0);
  EXPECT_EQ(p.samples["understudy_mode{mode=\"starting\"}"], 0);
  EXPECT_EQ(p.samples["understudy_role{role=\"backup\"}"], 1);
  EXPECT_EQ(p.samples["understudy_role{role=\"primary\"}"], 0);
  EXPECT_EQ(p.samples["understudy_front"], 1);
}

TEST(StatusMetrics, CountersCarryTheLayersValues) {
  Fixture f;
  auto p = parse(f.text());
  EXPECT_EQ(p.samples["understudy_connections{state=\"protected\"}"], 3);
  EXPECT_EQ(p.samples["understudy_connections{state=\"unprotected\"}"], 2);
  EXPECT_EQ(p.samples["understudy_failovers_total{kind=\"takeover\"}"], 1);
  EXPECT_EQ(p.samples["understudy_failovers_total{kind=\"peer_lost\"}"], 0);
  EXPECT_EQ(p.samples["understudy_requests_total"], 9);
  EXPECT_EQ(p.samples["understudy_packets_total{path=\"from_client\"}"], 100);
  EXPECT_EQ(p.samples["understudy_packets_total{path=\"relayed\"}"], 40);
  EXPECT_EQ(p.samples["understudy_relayed_bytes_total{direction=\"request\"}"], 1000);
  EXPECT_EQ(p.samples["understudy_relayed_bytes_total{direction=\"reply\"}"], 5000);
  EXPECT_EQ(p.samples["understudy_refused_input_total{layer=\"packet\",reason=\"bad_checksum\"}"],
            3);
  EXPECT_EQ(p.samples["understudy_refused_input_total{layer=\"message\",reason=\"bad_request\"}"],
            2);
  EXPECT_EQ(p.samples["understudy_refused_input_total{layer=\"peer\",reason=\"datagram\"}"], 4);
  EXPECT_EQ(p.samples["understudy_replication_lag_bytes"], 2048);
  EXPECT_DOUBLE_EQ(p.samples["understudy_replication_lag_seconds"], 0.004);
  EXPECT_DOUBLE_EQ(p.samples["understudy_uptime_seconds"], 1.5);
  EXPECT_EQ(p.samples["understudy_hook_events_total{result=\"sent\"}"], 6);
  EXPECT_EQ(p.samples["understudy_hook_events_total{result=\"dropped\"}"], 1);
}

// Microseconds in, seconds out; each bucket counts every observation at or below its bound, so
// the counts never decrease and +Inf equals _count.
TEST(StatusMetrics, HistogramsInSecondsAndCumulative) {
  Fixture f;
  for (double us : {5.0, 40.0, 40.0, 900.0, 3000.0, 20e6}) f.request.add(us);
  auto p = parse(f.text());
  const std::string n = "understudy_request_seconds";
  EXPECT_EQ(p.type[n], "histogram");
  EXPECT_EQ(p.samples[n + "_count"], 6);
  EXPECT_NEAR(p.samples[n + "_sum"], (5 + 40 + 40 + 900 + 3000 + 20e6) * 1e-6, 1e-9);
  EXPECT_EQ(p.samples[n + "_bucket{le=\"1e-05\"}"], 1);  // 5 us
  EXPECT_EQ(p.samples[n + "_bucket{le=\"5e-05\"}"], 3);  // and both 40 us
  EXPECT_EQ(p.samples[n + "_bucket{le=\"0.001\"}"], 4);  // and 900 us
  EXPECT_EQ(p.samples[n + "_bucket{le=\"0.005\"}"], 5);  // and 3 ms
  EXPECT_EQ(p.samples[n + "_bucket{le=\"10\"}"], 5);     // 20 s is above every bound
  EXPECT_EQ(p.samples[n + "_bucket{le=\"+Inf\"}"], 6);
  // Cumulative in the order written: 19 bounds, then +Inf.
  std::istringstream in(f.text());
  std::string line;
  double prev = 0;
  size_t buckets = 0;
  while (std::getline(in, line)) {
    if (!line.starts_with(n + "_bucket")) continue;
    ++buckets;
    double v = std::stod(line.substr(line.rfind(' ') + 1));
    EXPECT_GE(v, prev) << line;
    prev = v;
  }
  EXPECT_EQ(buckets, 20u);
  // An empty histogram: every bucket 0.
  auto q = parse(Fixture{}.text());
  EXPECT_EQ(q.samples["understudy_packet_seconds_bucket{le=\"+Inf\"}"], 0);
  EXPECT_EQ(q.samples["understudy_packet_seconds_count"], 0);
}

// docs/METRICS.md names every family the node writes.
TEST(StatusMetrics, EveryFamilyIsDocumented) {
  std::ifstream doc(std::string(UNDERSTUDY_SOURCE_DIR) + "/docs/METRICS.md");
  ASSERT_TRUE(doc) << "docs/METRICS.md";
  std::stringstream ss;
  ss << doc.rdbuf();
  Fixture f;
  for (const auto& name : parse(f.text()).order)
    EXPECT_NE(ss.str().find("`" + name + "`"), std::string::npos) << name << " is not documented";
}

}  // namespace
}  // namespace us::node
