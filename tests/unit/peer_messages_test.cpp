#include <gtest/gtest.h>

#include <vector>

#include "peer/messages.hpp"

namespace us::peer {
namespace {

using wire::SeqNum;

const ConnKey kKey{wire::Ipv4Addr(198, 18, 0, 2), 40000, 0xfffffff0u};

std::optional<HasReport> round_trip(const HasReport& r) {
  std::vector<uint8_t> extra, wire_bytes;
  encode_has_extra(extra, r);
  encode(wire_bytes, ConnMessage{Type::Has, kKey, r.has.raw(), 0, extra});
  auto m = decode_conn(Type::Has, wire_bytes);
  if (!m) return std::nullopt;
  EXPECT_EQ(m->key, kKey);
  return decode_has(*m);
}

TEST(PeerMessages, HasCarriesTheWindowsRightEdge) {
  HasReport r;
  r.has = SeqNum(0xfffffff0u);
  r.right = SeqNum(0x00010000u);  // across the wrap
  auto back = round_trip(r);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, r);

  HasReport bare;
  bare.has = SeqNum(7);
  back = round_trip(bare);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, bare);
}

TEST(PeerMessages, HasWithoutExtraStillDecodes) {
  std::vector<uint8_t> b;
  encode(b, ConnMessage{Type::Has, kKey, 1234, 0, {}});
  auto m = decode_conn(Type::Has, b);
  ASSERT_TRUE(m.has_value());
  auto r = decode_has(*m);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->has, SeqNum(1234));
  EXPECT_FALSE(r->right.has_value());
}

TEST(PeerMessages, MalformedHasExtraIsRejected) {
  auto decode_with = [](std::vector<uint8_t> extra) {
    std::vector<uint8_t> b;
    encode(b, ConnMessage{Type::Has, kKey, 1, 0, extra});
    auto m = decode_conn(Type::Has, b);
    return m ? decode_has(*m) : std::nullopt;
  };
  EXPECT_FALSE(decode_with({1, 0, 0}).has_value());                 // short edge
  EXPECT_FALSE(decode_with({2, 0, 0, 0, 0}).has_value());           // unknown flag
  EXPECT_FALSE(decode_with({1, 0, 0, 0, 0, 1, 2, 3}).has_value());  // trailing bytes
  EXPECT_TRUE(decode_with({1, 0, 0, 0, 9}).has_value());
}

}  // namespace
}  // namespace us::peer
