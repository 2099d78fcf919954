#include <gtest/gtest.h>

#include "node/layer_settings.hpp"

namespace us::node {
namespace {

config::Config sample() {
  config::Config c;
  c.node.role = Role::Backup;
  c.service.advertised = {wire::Ipv4Addr(198, 18, 0, 1), 80};
  c.node.server = {wire::Ipv4Addr(127, 0, 0, 1), 8080};
  c.tun.address = wire::Ipv4Addr(198, 19, 0, 1);
  c.tun.prefix = 16;
  c.limits.max_connections = 1000;
  c.limits.replication_window_bytes = 65536;
  c.limits.request_cache_bytes = 1 << 20;
  c.limits.idle_timeout_ms = 5000;
  c.limits.syn_cookie_threshold = 7;
  return c;
}

TEST(LayerSettings, PacketLayerFromConfig) {
  auto ps = packet_settings(sample());
  EXPECT_EQ(ps.role, Role::Backup);
  EXPECT_EQ(ps.advertised, (wire::Endpoint{wire::Ipv4Addr(198, 18, 0, 1), 80}));
  // The TUN side listens on the TUN address at the advertised port.
  EXPECT_EQ(ps.listen, (wire::Endpoint{wire::Ipv4Addr(198, 19, 0, 1), 80}));
  // Made-up client addresses: the TUN subnet from 256 above its own address, 512 kept back.
  EXPECT_EQ(ps.fake_first, wire::Ipv4Addr(198, 19, 1, 1));
  EXPECT_EQ(ps.fake_count, 65536u - 512u);
  EXPECT_EQ(ps.max_flows, 1000u);
  EXPECT_EQ(ps.max_half_open, 250u);
  EXPECT_EQ(ps.syn_cookie_threshold, 7u);
  EXPECT_FALSE(ps.mode);  // the node's to give
  EXPECT_FALSE(ps.server_isn);
}

TEST(LayerSettings, TinyTunSubnetStillHasOneMadeUpAddress) {
  auto c = sample();
  c.tun.prefix = 24;
  EXPECT_EQ(packet_settings(c).fake_count, 1u);
  c.tun.prefix = 32;
  EXPECT_EQ(packet_settings(c).fake_count, 1u);
}

TEST(LayerSettings, MessageLayerFromConfig) {
  auto ms = message_settings(sample());
  EXPECT_EQ(ms.role, Role::Backup);
  EXPECT_EQ(ms.listen, (wire::Endpoint{wire::Ipv4Addr(198, 19, 0, 1), 80}));
  EXPECT_EQ(ms.server, (wire::Endpoint{wire::Ipv4Addr(127, 0, 0, 1), 8080}));
  EXPECT_EQ(ms.window, 65536u);
  EXPECT_EQ(ms.max_connections, 1000u);
  EXPECT_EQ(ms.cache_limit, uint64_t{1} << 20);
  EXPECT_EQ(ms.idle_timeout, std::chrono::milliseconds(5000));
  EXPECT_FALSE(ms.mode);
  EXPECT_FALSE(ms.fault);
}

}  // namespace
}  // namespace us::node
