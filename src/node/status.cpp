#include "node/status.hpp"

#include <array>
#include <initializer_list>

#include "metrics/exposition.hpp"

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
        {"frames_refused", in.frames_refused},
        {"sent_whole", in.sent_whole},
        {"cut_no_next_hop", in.cut_no_next_hop},
        {"whole_refused", in.whole_refused}}},
      {"hooks", {{"events_sent", in.hook_events_sent}, {"events_dropped", in.hook_events_dropped}}},
      {"timing",
       {{"packet_us", summary_json(in.packet_time)},
        {"request_us", summary_json(in.request_time)},
        {"server_us", summary_json(in.server_time)},
        {"replication_us", summary_json(in.replication_time)}}},
  };
}

// ---------------------------------------------------------------------------------------------
// Prometheus metrics. Names and meanings are listed in docs/METRICS.md: keep both in step.

namespace {

using metrics::Exposition;
using metrics::Type;

// Bucket bounds in seconds, from a packet's microseconds to a slow request's seconds.
constexpr std::array<double, 19> kBounds = {1e-5,   2.5e-5, 5e-5, 1e-4,   2.5e-4, 5e-4, 1e-3,
                                            2.5e-3, 5e-3,   1e-2, 2.5e-2, 5e-2,   0.1,  0.25,
                                            0.5,    1,      2.5,  5,      10};

// Each of the histogram's buckets goes to the first bound at or above its upper edge, so an
// observation is never counted below a bound it may exceed; it may be counted one bound high
// when its bucket (about 9% wide) straddles a bound.
metrics::HistogramData seconds(const Histogram& h) {
  metrics::HistogramData d;
  d.bounds.assign(kBounds.begin(), kBounds.end());
  d.counts.assign(kBounds.size() + 1, 0);
  h.for_each_bucket([&](double upper_us, uint64_t n) {
    double upper = upper_us * 1e-6;
    size_t i = 0;
    while (i < kBounds.size() && kBounds[i] < upper) ++i;
    d.counts[i] += n;
  });
  d.sum = h.sum() * 1e-6;
  return d;
}

struct Reason {
  const char* name;
  uint64_t value;
};

}  // namespace

std::string status_metrics(const StatusInputs& in, const TimingHistograms& timing) {
  const auto& pc = in.packet;
  const auto& mc = in.message;
  Exposition e;

  e.family("understudy_mode", Type::Gauge, "1 for the mode this node is in, 0 for the others.");
  for (Mode m : {Mode::Starting, Mode::Duplex, Mode::Simplex})
    e.sample(uint64_t{in.mode == m}, {{"mode", to_string(m)}});
  e.family("understudy_role", Type::Gauge, "1 for this node's configured role.");
  for (Role r : {Role::Primary, Role::Backup})
    e.sample(uint64_t{in.role == r}, {{"role", to_string(r)}});
  e.gauge("understudy_front", "1 while this node owns the advertised address.", in.front);
  e.gauge("understudy_peer_alive", "1 while the peer's heartbeats arrive.", in.peer_alive);
  e.gauge("understudy_replication_channel_up", "1 while the replication channel is up.",
          in.channel_up);
  e.gauge("understudy_uptime_seconds", "Seconds since this daemon started.",
          static_cast<double>(in.uptime_ms) / 1000);

  e.family("understudy_connections", Type::Gauge,
           "Client connections open in the message layer: protected (both nodes hold them) or "
           "unprotected (opened before the peer rejoined: this node's alone).");
  e.sample(uint64_t{in.connections - in.connections_unprotected}, {{"state", "protected"}});
  e.sample(uint64_t{in.connections_unprotected}, {{"state", "unprotected"}});
  e.gauge("understudy_flows", "Client TCP flows in the packet layer's table.",
          static_cast<double>(in.flows));
  e.counter("understudy_connections_accepted_total", "Client connections accepted.", mc.accepted);

  e.family("understudy_failovers_total", Type::Counter,
           "Failovers: takeover (the backup took over from a lost primary), peer_lost (the "
           "primary lost its backup and serves alone).");
  e.sample(in.takeovers, {{"kind", "takeover"}});
  e.sample(in.peer_losses, {{"kind", "peer_lost"}});
  e.counter("understudy_rejoins_total",
            "Times a restarted peer joined this node while it served alone.", in.rejoins);

  e.counter("understudy_requests_total", "HTTP requests read from clients.", mc.requests);
  e.counter("understudy_replies_total", "HTTP replies completed.", mc.replies);
  e.counter("understudy_regenerated_replies_total",
            "Replies the backup regenerated after a takeover (the primary died mid-reply).",
            mc.regenerated);
  e.counter("understudy_upstream_errors_total", "Failures of the local web server's connection.",
            mc.upstream_errors);

  e.family("understudy_packets_total", Type::Counter,
           "Packets through the packet layer by path: from_client (received from clients), "
           "relayed (client packets relayed to the peer), to_front (passed to the node that owns "
           "the address), to_kernel (into this node's TCP stack), to_client (sent to clients).");
  for (Reason r : {Reason{"from_client", pc.client_packets}, Reason{"relayed", pc.relayed},
                   Reason{"to_front", pc.sent_to_front}, Reason{"to_kernel", pc.to_kernel},
                   Reason{"to_client", pc.to_client}})
    e.sample(r.value, {{"path", r.name}});
  e.family("understudy_relayed_bytes_total", Type::Counter,
           "Bytes of the client streams through this node's client sockets: request (read from "
           "clients) and reply (written to them).");
  e.sample(mc.request_bytes, {{"direction", "request"}});
  e.sample(mc.reply_bytes, {{"direction", "reply"}});

  e.gauge("understudy_replication_lag_bytes",
          "Primary in duplex: reply bytes sent to the backup and not yet acknowledged by it.",
          static_cast<double>(in.replication_unacked_bytes));
  e.gauge("understudy_replication_lag_seconds",
          "Primary in duplex: how long the oldest unacknowledged reply bytes have waited for the "
          "backup.",
          in.replication_lag_seconds);
  e.gauge("understudy_replication_queued_bytes",
          "Bytes queued for the replication channel that its socket has not taken yet.",
          static_cast<double>(in.replication_queued_bytes));

  e.family("understudy_refused_input_total", Type::Counter,
           "Input refused or dropped, by layer and reason (docs/METRICS.md).");
  for (Reason r :
       {Reason{"malformed", pc.dropped_malformed}, Reason{"bad_checksum", pc.dropped_bad_checksum},
        Reason{"unknown_flow", pc.dropped_unknown_flow}, Reason{"not_front", pc.dropped_not_front},
        Reason{"kernel_unknown_flow", pc.dropped_kernel_unknown},
        Reason{"table_full", pc.dropped_table_full}, Reason{"rst_not_exact", pc.rst_ignored},
        Reason{"syn_on_live_flow", pc.syns_on_live_flow},
        Reason{"ack_beyond_sent", pc.acks_beyond_sent}, Reason{"ack_too_old", pc.acks_too_old},
        Reason{"syn_over_source_cap", pc.syns_over_source_cap},
        Reason{"half_open_evicted", pc.half_open_evicted},
        Reason{"half_open_expired", pc.half_open_expired}, Reason{"idle_expired", pc.idle_expired}})
    e.sample(r.value, {{"layer", "packet"}, {"reason", r.name}});
  for (Reason r :
       {Reason{"bad_request", mc.bad_requests}, Reason{"protocol_error", mc.protocol_errors},
        Reason{"header_timeout", mc.head_timeouts}, Reason{"body_timeout", mc.body_timeouts},
        Reason{"close_timeout", mc.close_timeouts}, Reason{"send_timeout", mc.send_timeouts},
        Reason{"per_source_cap", mc.refused_per_source}})
    e.sample(r.value, {{"layer", "message"}, {"reason", r.name}});
  e.sample(in.rejected_frames, {{"layer", "peer"}, {"reason", "channel_frame"}});
  e.sample(in.rejected_datagrams, {{"layer", "peer"}, {"reason", "datagram"}});
  e.sample(in.frames_refused, {{"layer", "offload"}, {"reason", "frame"}});
  e.counter("understudy_discarded_bytes_total",
            "Client bytes read and dropped after a refused request or once closing.",
            mc.discarded_bytes);
  e.counter("understudy_challenge_acks_total", "RFC 5961 challenge ACKs sent.", pc.challenge_acks);
  e.counter("understudy_syn_cookies_total", "SYN-ACKs sent as SYN cookies.", pc.syn_cookies_sent);
  e.counter("understudy_arp_replies_total", "ARP replies sent for the advertised address.",
            in.arp_replies);
  e.counter("understudy_gratuitous_arps_total", "Gratuitous ARPs sent on becoming the front.",
            in.gratuitous_arps);
  e.family("understudy_super_segments_total", Type::Counter,
           "TCP super-segments the kernels handed over whole (offloads), by where from and what "
           "became of them on the way to the client.");
  e.sample(in.kernel_super_segments, {{"event", "from_kernel"}});
  e.sample(in.lan_super_segments, {{"event", "from_lan"}});
  e.sample(in.sent_whole, {{"event", "sent_whole"}});
  e.sample(in.cut_no_next_hop, {{"event", "cut_no_next_hop"}});
  e.sample(in.whole_refused, {{"event", "refused_by_lan"}});
  e.family("understudy_hook_events_total", Type::Counter,
           "Mode changes sent to the hook runner, and the ones dropped because it was slow or "
           "gone (that hook did not run).");
  e.sample(in.hook_events_sent, {{"result", "sent"}});
  e.sample(in.hook_events_dropped, {{"result", "dropped"}});
  e.counter("understudy_segments_cut_total",
            "Segments the daemon cut from super-segments itself (LAN input; replies it could "
            "not send whole).",
            in.segments_cut);

  struct Timed {
    const char* name;
    const char* help;
    const Histogram& h;
  };
  for (const Timed& t : {
           Timed{"understudy_packet_seconds",
                 "Packet-layer processing of one packet (from a client or from this node's "
                 "kernel).",
                 timing.packet},
           Timed{"understudy_request_seconds",
                 "From a request's first byte read to its reply's last byte written.",
                 timing.request},
           Timed{"understudy_server_seconds",
                 "From a request's first byte sent to the web server to its reply's first byte.",
                 timing.server},
           Timed{"understudy_replication_seconds",
                 "Primary in duplex: from a Reply frame sent to the backup's ReplyAck.",
                 timing.replication},
       }) {
    e.family(t.name, Type::Histogram, t.help);
    e.histogram(seconds(t.h));
  }
  return e.take();
}

}  // namespace us::node
