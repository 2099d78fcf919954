// What `understudy status --json` prints: one JSON object built from the layers' counters. Outside
// tools parse it (bench/, chaos/, tests/lab/), so a key, once here, keeps its name and meaning;
// tests/unit/node_status_test.cpp lists every key.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "common/histogram.hpp"
#include "core/vocabulary.hpp"
#include "message/message_layer.hpp"
#include "packet/packet_layer.hpp"

namespace us::node {

struct StatusInputs {
  Role role = Role::Primary;
  Mode mode = Mode::Starting;
  bool front = false;
  bool peer_alive = false;
  size_t connections = 0;  // the message layer's
  // Of those, the ones open before a rejoin, which only this node serves (docs/ARCHITECTURE.md,
  // "Rejoin"); the rest are protected.
  size_t connections_unprotected = 0;
  size_t flows = 0;                // the packet layer's
  bool syn_cookies_ready = false;  // it knows the SYN-ACK its kernel sends (PacketLayer)
  uint64_t failovers = 0;
  uint64_t boot_id = 0;
  std::string advertised;  // "ip:port"
  int64_t uptime_ms = 0;
  std::string fault_armed;  // "point:nth", empty if none
  bool channel_up = false;
  packet::Counters packet;
  message::Counters message;
  uint64_t rejected_frames = 0;     // replication channel
  uint64_t rejected_datagrams = 0;  // peer::Datagrams::rejected()
  uint64_t arp_replies = 0, gratuitous_arps = 0;
  // Frames the kernels handed over whole (node::PacketPath::OffloadCounters).
  uint64_t kernel_super_segments = 0, lan_super_segments = 0, segments_cut = 0, frames_refused = 0,
           sent_whole = 0, cut_no_next_hop = 0, whole_refused = 0;
  // Events sent to the hook runner, and dropped (it was slow or gone; node/hooks.hpp).
  uint64_t hook_events_sent = 0, hook_events_dropped = 0;
  // Microseconds: per packet through the packet layer, then message::MessageLayer::Timing's.
  Histogram::Summary packet_time, request_time, server_time, replication_time;

  // For the metrics only (status_json leaves them out): failovers by kind (they add up to
  // `failovers`), rejoins of the peer seen here, and the replication lag
  // (message::MessageLayer::replication_lag; bytes queued on the channel, peer::Channel::queued).
  uint64_t takeovers = 0, peer_losses = 0, rejoins = 0;
  uint64_t replication_unacked_bytes = 0;
  double replication_lag_seconds = 0;
  uint64_t replication_queued_bytes = 0;
};

nlohmann::json status_json(const StatusInputs& in);

// The same values in the Prometheus text format (docs/METRICS.md lists every metric), with the
// timing histograms whole rather than summarised.
struct TimingHistograms {
  const Histogram& packet;
  const Histogram& request;
  const Histogram& server;
  const Histogram& replication;
};
std::string status_metrics(const StatusInputs& in, const TimingHistograms& timing);

}  // namespace us::node
