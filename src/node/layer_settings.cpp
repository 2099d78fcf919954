#include "node/layer_settings.hpp"

#include <algorithm>

namespace us::node {

packet::Settings packet_settings(const config::Config& cfg) {
  packet::Settings ps;
  ps.role = cfg.node.role;
  ps.advertised = cfg.service.advertised;
  ps.listen = {cfg.tun.address, cfg.service.advertised.port};
  // Made-up client addresses: the TUN subnet above its own address.
  ps.fake_first = wire::Ipv4Addr(cfg.tun.address.v + 256);
  uint32_t size = cfg.tun.prefix >= 32 ? 1 : (uint32_t{1} << (32 - cfg.tun.prefix));
  ps.fake_count = size > 512 ? size - 512 : 1;
  ps.max_flows = static_cast<size_t>(cfg.limits.max_connections);
  ps.half_open_timeout = std::chrono::milliseconds(cfg.limits.half_open_timeout_ms);
  ps.flow_idle_timeout = std::chrono::milliseconds(cfg.limits.flow_idle_timeout_ms);
  // A quarter of the table for handshakes in progress: real ones last a round trip.
  ps.max_half_open = std::max<size_t>(1, ps.max_flows / 4);
  ps.syn_cookie_threshold = static_cast<size_t>(cfg.limits.syn_cookie_threshold);
  return ps;
}

message::Settings message_settings(const config::Config& cfg) {
  message::Settings ms;
  ms.role = cfg.node.role;
  ms.listen = {cfg.tun.address, cfg.service.advertised.port};
  ms.server = cfg.node.server;
  ms.window = static_cast<size_t>(cfg.limits.replication_window_bytes);
  ms.max_connections = static_cast<size_t>(cfg.limits.max_connections);
  ms.cache_limit = cfg.limits.request_cache_bytes;
  ms.idle_timeout = std::chrono::milliseconds(cfg.limits.idle_timeout_ms);
  ms.max_body = cfg.limits.max_body_bytes;
  ms.request_buffer = static_cast<size_t>(cfg.limits.request_buffer_bytes);
  ms.header_timeout = std::chrono::milliseconds(cfg.limits.header_timeout_ms);
  ms.body_timeout = std::chrono::milliseconds(cfg.limits.body_timeout_ms);
  ms.close_timeout = std::chrono::milliseconds(cfg.limits.close_timeout_ms);
  ms.max_per_source = static_cast<size_t>(cfg.limits.max_connections_per_source);
  ms.send_timeout = std::chrono::milliseconds(cfg.limits.send_timeout_ms);
  ms.request_buffer_total = cfg.limits.request_buffer_total_bytes;
  return ms;
}

}  // namespace us::node
