#include <gtest/gtest.h>

#include <set>
#include <string>

#include "node/status.hpp"

namespace us::node {
namespace {

// Every key `understudy status --json` prints. bench/, chaos/ and tests/lab/ parse these: none may
// go or change its meaning (new ones may come).
const std::set<std::string> kKeys = {
    "role", "mode", "front", "peer", "connections", "flows", "failovers", "boot_id", "advertised",
    "uptime_ms", "fault_armed", "channel_up",
    // added with rejoin (issue 9)
    "connections_protected", "connections_unprotected",
    // added with SYN cookies (issue 10)
    "syn_cookies_ready",
    // packet layer
    "packet.client_packets", "packet.relayed", "packet.to_kernel", "packet.to_client",
    "packet.dropped_malformed", "packet.dropped_bad_checksum", "packet.dropped_unknown_flow",
    "packet.dropped_not_front", "packet.sent_to_front", "packet.dropped_table_full",
    "packet.acks_clamped", "packet.syn_acks_held", "packet.fake_acks", "packet.kernel_acks_clamped",
    "packet.takeover_resends", "packet.acks_fabricated", "packet.retained_sent",
    "packet.flows_opened", "packet.flows_handed", "packet.flows_adopted",
    "packet.adoptions_refused", "packet.early_replayed", "packet.resets_unknown_flow",
    "packet.rst_ignored", "packet.syns_on_live_flow", "packet.acks_beyond_sent",
    "packet.acks_too_old", "packet.challenge_acks", "packet.challenge_acks_limited",
    "packet.half_open_expired", "packet.idle_expired", "packet.half_open_evicted",
    "packet.syns_over_source_cap", "packet.syn_cookies_sent", "packet.syn_cookie_flows",
    // message layer
    "message.accepted", "message.requests", "message.replies", "message.bad_requests",
    "message.upstream_errors", "message.regenerated", "message.regen_mismatch", "message.aborted",
    "message.protocol_errors", "message.discarded_bytes", "message.head_timeouts",
    "message.body_timeouts", "message.close_timeouts", "message.refused_per_source",
    "message.send_timeouts", "message.budget_pauses",
    // peer and ARP
    "peer_channel.rejected_frames", "peer_channel.rejected_datagrams", "arp.replies",
    "arp.gratuitous",
    // added with offloads (issue 11)
    "offload.kernel_super_segments", "offload.lan_super_segments", "offload.segments_cut",
    "offload.frames_refused", "offload.sent_whole", "offload.cut_no_next_hop",
    "offload.whole_refused",
    // hook events (issue 12)
    "hooks.events_sent", "hooks.events_dropped",
    // timing histograms, microseconds
    "timing.packet_us.count", "timing.packet_us.mean", "timing.packet_us.p50",
    "timing.packet_us.p99", "timing.packet_us.max", "timing.request_us.count",
    "timing.request_us.mean", "timing.request_us.p50", "timing.request_us.p99",
    "timing.request_us.max", "timing.server_us.count", "timing.server_us.mean",
    "timing.server_us.p50", "timing.server_us.p99", "timing.server_us.max",
    "timing.replication_us.count", "timing.replication_us.mean", "timing.replication_us.p50",
    "timing.replication_us.p99", "timing.replication_us.max"};

void leaves(const nlohmann::json& j, const std::string& prefix, std::set<std::string>& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string path = prefix.empty() ? it.key() : prefix + "." + it.key();
    if (it->is_object()) {
      leaves(*it, path, out);
    } else {
      out.insert(path);
    }
  }
}

// Distinct values everywhere, so a value printed under the wrong key shows.
StatusInputs sample() {
  StatusInputs in;
  in.role = Role::Backup;
  in.mode = Mode::Duplex;
  in.front = true;
  in.peer_alive = true;
  in.connections = 3;
  in.connections_unprotected = 1;
  in.flows = 4;
  in.syn_cookies_ready = true;
  in.failovers = 5;
  in.boot_id = 1700000000123456;
  in.advertised = "198.18.0.1:80";
  in.uptime_ms = 6000;
  in.fault_armed = "primary.before_ack:2";
  in.channel_up = true;
  in.packet.client_packets = 101;
  in.packet.relayed = 102;
  in.packet.dropped_bad_checksum = 106;
  in.packet.flows_opened = 118;
  in.message.accepted = 201;
  in.message.protocol_errors = 209;
  in.message.discarded_bytes = 210;
  in.message.refused_per_source = 214;
  in.message.send_timeouts = 215;
  in.message.budget_pauses = 216;
  in.rejected_frames = 301;
  in.rejected_datagrams = 302;
  in.arp_replies = 401;
  in.gratuitous_arps = 402;
  in.segments_cut = 501;
  in.hook_events_sent = 601;
  in.hook_events_dropped = 602;
  in.frames_refused = 502;
  Histogram h;
  h.add(10.0);
  h.add(30.0);
  in.server_time = h.summary();
  return in;
}

TEST(NodeStatus, HasEveryKeyStatusJsonHadAndNoOther) {
  std::set<std::string> got;
  leaves(status_json(sample()), "", got);
  EXPECT_EQ(got, kKeys);
}

TEST(NodeStatus, ValuesLandUnderTheirKeys) {
  auto j = status_json(sample());
  EXPECT_EQ(j["role"], "backup");
  EXPECT_EQ(j["mode"], "duplex");
  EXPECT_EQ(j["front"], true);
  EXPECT_EQ(j["peer"], "alive");
  EXPECT_EQ(j["connections"], 3);
  EXPECT_EQ(j["connections_protected"], 2);
  EXPECT_EQ(j["connections_unprotected"], 1);
  EXPECT_EQ(j["flows"], 4);
  EXPECT_EQ(j["syn_cookies_ready"], true);
  EXPECT_EQ(j["failovers"], 5);
  EXPECT_EQ(j["boot_id"], 1700000000123456u);
  EXPECT_EQ(j["advertised"], "198.18.0.1:80");
  EXPECT_EQ(j["uptime_ms"], 6000);
  EXPECT_EQ(j["fault_armed"], "primary.before_ack:2");
  EXPECT_EQ(j["channel_up"], true);
  EXPECT_EQ(j["packet"]["client_packets"], 101);
  EXPECT_EQ(j["packet"]["relayed"], 102);
  EXPECT_EQ(j["packet"]["dropped_bad_checksum"], 106);
  EXPECT_EQ(j["packet"]["flows_opened"], 118);
  EXPECT_EQ(j["packet"]["to_kernel"], 0);
  EXPECT_EQ(j["message"]["accepted"], 201);
  EXPECT_EQ(j["message"]["protocol_errors"], 209);
  EXPECT_EQ(j["message"]["discarded_bytes"], 210);
  EXPECT_EQ(j["message"]["refused_per_source"], 214);
  EXPECT_EQ(j["message"]["send_timeouts"], 215);
  EXPECT_EQ(j["message"]["budget_pauses"], 216);
  EXPECT_EQ(j["peer_channel"]["rejected_frames"], 301);
  EXPECT_EQ(j["peer_channel"]["rejected_datagrams"], 302);
  EXPECT_EQ(j["arp"]["replies"], 401);
  EXPECT_EQ(j["arp"]["gratuitous"], 402);
  EXPECT_EQ(j["offload"]["segments_cut"], 501);
  EXPECT_EQ(j["offload"]["frames_refused"], 502);
  EXPECT_EQ(j["hooks"]["events_sent"], 601);
  EXPECT_EQ(j["hooks"]["events_dropped"], 602);
  EXPECT_EQ(j["timing"]["server_us"]["count"], 2);
  EXPECT_EQ(j["timing"]["server_us"]["mean"], 20.0);
  EXPECT_EQ(j["timing"]["server_us"]["max"], 30.0);
  EXPECT_EQ(j["timing"]["request_us"]["count"], 0);
  EXPECT_EQ(j["timing"]["packet_us"]["p99"], 0.0);
}

TEST(NodeStatus, DeadPeerAndPrimaryRole) {
  StatusInputs in;
  in.role = Role::Primary;
  in.mode = Mode::Simplex;
  auto j = status_json(in);
  EXPECT_EQ(j["role"], "primary");
  EXPECT_EQ(j["mode"], "simplex");
  EXPECT_EQ(j["peer"], "dead");
  EXPECT_EQ(j["front"], false);
  EXPECT_EQ(j["fault_armed"], "");
}

}  // namespace
}  // namespace us::node
