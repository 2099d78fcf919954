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

// Computed by hand with Python's hmac (v2: the SYN's offer in the low byte and in the MAC): a
// change of these bytes would make two nodes of different versions disagree (I3).
TEST(ServerIsn, KnownAnswer) {
  EXPECT_EQ(ServerIsn(master_key(), kAdvertised)(kConn, 0xee), 0xa5ae37eeu);
  ConnKey other{wire::Ipv4Addr(10, 0, 0, 7), 443, 1u};
  wire::Endpoint adv{wire::Ipv4Addr(192, 0, 2, 10), 8080};
  EXPECT_EQ(ServerIsn(master_key(), adv)(other, 0x00), 0x97101100u);
}

TEST(ServerIsn, SameInputsSameIsnOnBothNodes) {
  ServerIsn primary(master_key(), kAdvertised), backup(master_key(), kAdvertised);
  EXPECT_EQ(primary(kConn, 7), backup(kConn, 7));
  EXPECT_EQ(primary(kConn, 7), primary(kConn, 7));
}

// The low byte is the offer as given; the MAC covers it, so a client cannot change what the
// cookie says about its SYN without guessing 24 new bits.
TEST(ServerIsn, LowByteIsTheOfferAndTheMacCoversIt) {
  ServerIsn isn(master_key(), kAdvertised);
  for (uint32_t low : {0u, 1u, 0x7fu, 0xffu})
    EXPECT_EQ(isn(kConn, static_cast<uint8_t>(low)) & 0xff, low);
  EXPECT_NE(isn(kConn, 0x10) >> 8, isn(kConn, 0x11) >> 8);
}

TEST(ServerIsn, DependsOnEveryInput) {
  ServerIsn isn(master_key(), kAdvertised);
  const uint32_t base = isn(kConn, 0);
  ConnKey k = kConn;
  k.ip = wire::Ipv4Addr(198, 18, 0, 3);
  EXPECT_NE(isn(k, 0), base);
  k = kConn;
  k.port = 40001;
  EXPECT_NE(isn(k, 0), base);
  k = kConn;
  k.isn = 0xfffffff1u;
  EXPECT_NE(isn(k, 0), base);

  EXPECT_NE(ServerIsn(master_key(), {wire::Ipv4Addr(198, 18, 0, 9), 80})(kConn, 0), base);
  EXPECT_NE(ServerIsn(master_key(), {kAdvertised.ip, 8080})(kConn, 0), base);
  Key other = master_key();
  other[31] ^= 1;
  EXPECT_NE(ServerIsn(other, kAdvertised)(kConn, 0), base);
}

}  // namespace
}  // namespace us::crypto
