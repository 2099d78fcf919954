#include <gtest/gtest.h>

#include "crypto/isn.hpp"

namespace us::crypto {
namespace {

Key master_key() {
  Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(i);
  return k;
}

const wire::Endpoint kAdvertised{wire::Ipv4Addr(198, 18, 0, 1), 80};
const ConnKey kConn{wire::Ipv4Addr(198, 18, 0, 2), 40000, 0xfffffff0u};

// Computed by the node's server_isn before it moved here (commit e24dc51), and by hand with
// Python's hmac: a change of these bytes would make two nodes of different versions disagree (I3).
TEST(ServerIsn, KnownAnswer) {
  EXPECT_EQ(ServerIsn(master_key(), kAdvertised)(kConn), 0x17694b19u);
  ConnKey other{wire::Ipv4Addr(10, 0, 0, 7), 443, 1u};
  wire::Endpoint adv{wire::Ipv4Addr(192, 0, 2, 10), 8080};
  EXPECT_EQ(ServerIsn(master_key(), adv)(other), 0xcaa8e94fu);
}

TEST(ServerIsn, SameInputsSameIsnOnBothNodes) {
  ServerIsn primary(master_key(), kAdvertised), backup(master_key(), kAdvertised);
  EXPECT_EQ(primary(kConn), backup(kConn));
  EXPECT_EQ(primary(kConn), primary(kConn));
}

TEST(ServerIsn, DependsOnEveryInput) {
  ServerIsn isn(master_key(), kAdvertised);
  const uint32_t base = isn(kConn);
  ConnKey k = kConn;
  k.ip = wire::Ipv4Addr(198, 18, 0, 3);
  EXPECT_NE(isn(k), base);
  k = kConn;
  k.port = 40001;
  EXPECT_NE(isn(k), base);
  k = kConn;
  k.isn = 0xfffffff1u;
  EXPECT_NE(isn(k), base);

  EXPECT_NE(ServerIsn(master_key(), {wire::Ipv4Addr(198, 18, 0, 9), 80})(kConn), base);
  EXPECT_NE(ServerIsn(master_key(), {kAdvertised.ip, 8080})(kConn), base);
  Key other = master_key();
  other[31] ^= 1;
  EXPECT_NE(ServerIsn(other, kAdvertised)(kConn), base);
}

}  // namespace
}  // namespace us::crypto
