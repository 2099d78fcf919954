#include "node/status.hpp"

namespace us::node {
namespace {

nlohmann::json summary_json(const Histogram::Summary& s) {
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}, {"max", s.max}};
}

}  // namespace

nlohmann::json status_json(const StatusInputs& in) {
  const auto& pc = in.packet;
  const auto& mc = in.message;
  return {
      {"role", to_string(in.role)},
      {"mode", to_string(in.mode)},
      {"front", in.front},
      {"peer", in.peer_alive ? "alive" : "dead"},
      {"connections", in.connections},
      {"connections_protected", in.connections - in.connections_unprotected},
      {"connections_unprotected", in.connections_unprotected},
      {"flows", in.flows},
      {"syn_cookies_ready", in.syn_cookies_ready},
      {"failovers", in.failovers},
      {"boot_id", in.boot_id},
      {"advertised", in.advertised},
      {"uptime_ms", in.uptime_ms},
      {"fault_armed", in.fault_armed},
      {"channel_up", in.channel_up},
      {"packet",
       {{"client_packets", pc.client_packets},
        {"relayed", pc.relayed},
        {"to_kernel", pc.to_kernel},
        {"to_client", pc.to_client},
        {"dropped_malformed", pc.dropped_malformed},
        {"dropped_bad_checksum", pc.dropped_bad_checksum},
        {"dropped_unknown_flow", pc.dropped_unknown_flow},
        {"dropped_not_front", pc.dropped_not_front},
        {"sent_to_front", pc.sent_to_front},
        {"dropped_table_full", pc.dropped_table_full},
        {"acks_clamped", pc.acks_clamped},
        {"syn_acks_held", pc.syn_acks_held},
        {"fake_acks", pc.fake_acks},
        {"kernel_acks_clamped", pc.kernel_acks_clamped},
        {"takeover_resends", pc.takeover_resends},
        {"acks_fabricated", pc.acks_fabricated},
        {"retained_sent", pc.retained_sent},
        {"flows_opened", pc.flows_opened},
        {"flows_handed", pc.flows_handed},
        {"flows_adopted", pc.flows_adopted},
        {"adoptions_refused", pc.adoptions_refused},
        {"early_replayed", pc.early_replayed},

        {"resets_unknown_flow", pc.resets_unknown_flow},
        {"rst_ignored", pc.rst_ignored},
        {"syns_on_live_flow", pc.syns_on_live_flow},
        {"acks_beyond_sent", pc.acks_beyond_sent},
        {"acks_too_old", pc.acks_too_old},
        {"challenge_acks", pc.challenge_acks},
        {"challenge_acks_limited", pc.challenge_acks_limited},
        {"half_open_expired", pc.half_open_expired},
        {"idle_expired", pc.idle_expired},
        {"half_open_evicted", pc.half_open_evicted},
        {"syns_over_source_cap", pc.syns_over_source_cap},
        {"syn_cookies_sent", pc.syn_cookies_sent},
        {"syn_cookie_flows", pc.syn_cookie_flows}}},
      {"message",
       {{"accepted", mc.accepted},
        {"requests", mc.requests},
        {"replies", mc.replies},
        {"bad_requests", mc.bad_requests},
        {"upstream_errors", mc.upstream_errors},
        {"regenerated", mc.regenerated},
        {"regen_mismatch", mc.regen_mismatch},
        {"aborted", mc.aborted},
        {"protocol_errors", mc.protocol_errors},
        {"discarded_bytes", mc.discarded_bytes},
        {"head_timeouts", mc.head_timeouts},
        {"body_timeouts", mc.body_timeouts},
        {"close_timeouts", mc.close_timeouts},
        {"refused_per_source", mc.refused_per_source},
        {"send_timeouts", mc.send_timeouts},
        {"budget_pauses", mc.budget_pauses}}},
      {"peer_channel",
       {{"rejected_frames", in.rejected_frames}, {"rejected_datagrams", in.rejected_datagrams}}},
      {"arp", {{"replies", in.arp_replies}, {"gratuitous", in.gratuitous_arps}}},
      {"offload",
       {{"kernel_super_segments", in.kernel_super_segments},
        {"lan_super_segments", in.lan_super_segments},
        {"segments_cut", in.segments_cut},
        {"frames_refused", in.frames_refused}}},
      {"timing",
       {{"packet_us", summary_json(in.packet_time)},
        {"request_us", summary_json(in.request_time)},
        {"server_us", summary_json(in.server_time)},
        {"replication_us", summary_json(in.replication_time)}}},
  };
}

}  // namespace us::node
