// The messages between the nodes (src/peer/messages.hpp): every message survives encode -> decode
// unchanged; truncated, oversized and unknown payloads are refused; and golden byte vectors pin the
// wire format (big-endian, fields in declaration order), so a change to it cannot slip by: both
// nodes of a pair must agree on it byte for byte during a rolling upgrade.
#include <gtest/gtest.h>

#include <optional>
#include <vector>

#include "peer/messages.hpp"

namespace us::peer {
namespace {

using wire::SeqNum;
using Bytes = std::vector<uint8_t>;

const ConnKey kKey{wire::Ipv4Addr(198, 18, 0, 2), 40000, 0xfffffff0u};
// kKey on the wire: address, port, ISN.
const Bytes kKeyBytes{198, 18, 0, 2, 0x9c, 0x40, 0xff, 0xff, 0xff, 0xf0};

Bytes cat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

template <typename M>
Bytes encoded(const M& m) {
  Bytes b;
  encode(b, m);
  return b;
}

Hello hello() {
  Hello h{Role::Backup, Mode::Duplex, 0x0102030405060708ull, {}};
  for (uint8_t i = 0; i < 16; ++i) h.nonce[i] = static_cast<uint8_t>(0xa0 + i);
  return h;
}

void expect_same(const ConnMessage& a, const ConnMessage& b) {
  EXPECT_EQ(a.type, b.type);
  EXPECT_EQ(a.key, b.key);
  EXPECT_EQ(a.value, b.value);
  EXPECT_EQ(a.index, b.index);
  EXPECT_EQ(Bytes(a.data.begin(), a.data.end()), Bytes(b.data.begin(), b.data.end()));
}

// ---------------------------------------------------------------------------------------------
// Hello and Heartbeat.

TEST(PeerMessages, Hello_RoundTrip) {
  for (Role r : {Role::Primary, Role::Backup}) {
    for (Mode m : {Mode::Starting, Mode::Duplex, Mode::Simplex}) {
      Hello h = hello();
      h.role = r;
      h.mode = m;
      auto back = decode_hello(encoded(h));
      ASSERT_TRUE(back.has_value());
      EXPECT_EQ(back->role, r);
      EXPECT_EQ(back->mode, m);
      EXPECT_EQ(back->boot_id, h.boot_id);
      EXPECT_EQ(back->nonce, h.nonce);
      EXPECT_TRUE(back->settings.empty());
    }
  }
}

// What config::shared_settings gives, in the shape the config test pins.
const std::vector<std::pair<std::string, std::string>> kSettings{
    {"service.advertised", "198.18.0.10:80"},
    {"peer.port", "7400"},
    {"heartbeat.timeout_ms", "100"},
};

TEST(PeerMessages, Hello_WithSettings_RoundTrip) {
  Hello h = hello();
  h.settings = kSettings;
  auto back = decode_hello(encoded(h));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->boot_id, h.boot_id);
  EXPECT_EQ(back->nonce, h.nonce);
  EXPECT_EQ(back->settings, kSettings);
  // An empty value is a value; the longest key and value fit their length byte.
  h.settings = {{"a", ""}, {std::string(255, 'k'), std::string(255, 'v')}};
  back = decode_hello(encoded(h));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(back->settings, h.settings);
}

TEST(PeerMessages, Hello_GoldenBytes) {
  const Bytes golden{1,    1,    1,    2,    3,    4,    5,    6,    7,
                     8,    0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7,
                     0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0};
  // role Backup = 1, mode Duplex = 1, boot id, nonce, no settings
  EXPECT_EQ(encoded(hello()), golden);
}

TEST(PeerMessages, Hello_WithSettings_GoldenBytes) {
  Hello h = hello();
  h.settings = {{"tun.mtu", "1400"}, {"a.b", "7"}};
  Bytes expect = encoded(hello());
  expect.pop_back();       // the fields before the settings: Hello_GoldenBytes
  const Bytes settings{2,  // count
                       7, 't', 'u', 'n', '.', 'm', 't', 'u',  // key
                       4, '1', '4', '0', '0',                 // value
                       3, 'a', '.', 'b',                      // key
                       1, '7'};                               // value
  EXPECT_EQ(encoded(h), cat(expect, settings));
}

TEST(PeerMessages, Hello_TruncatedOversizedOrInvalidRefused) {
  const Bytes good = encoded(hello());
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode_hello(Bytes(good.begin(), good.begin() + static_cast<long>(n))))
        << "prefix of " << n;
  EXPECT_FALSE(decode_hello(cat(good, {0})));
  Bytes bad_role = good, bad_mode = good;
  bad_role[0] = 2;
  bad_mode[1] = 3;
  EXPECT_FALSE(decode_hello(bad_role));
  EXPECT_FALSE(decode_hello(bad_mode));
}

TEST(PeerMessages, Hello_MalformedSettingsRefused) {
  Hello h = hello();
  h.settings = kSettings;
  const Bytes good = encoded(h);
  ASSERT_TRUE(decode_hello(good));
  // Cut anywhere inside the settings, or followed by anything.
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode_hello(Bytes(good.begin(), good.begin() + static_cast<long>(n))))
        << "prefix of " << n;
  EXPECT_FALSE(decode_hello(cat(good, {0})));
  EXPECT_FALSE(decode_hello(cat(good, {1, 'x'})));

  const Bytes head = encoded(hello());
  const Bytes before(head.begin(), head.end() - 1);  // up to the nonce
  auto with = [&](const Bytes& settings) { return decode_hello(cat(before, settings)); };
  EXPECT_TRUE(with({1, 1, 'k', 1, 'v'}));
  EXPECT_FALSE(with({2, 1, 'k', 1, 'v'}));                  // count says more than there is
  EXPECT_FALSE(with({1, 1, 'k', 2, 'v'}));                  // value longer than the payload
  EXPECT_FALSE(with({1, 0, 1, 'v'}));                       // empty key
  EXPECT_FALSE(with({2, 1, 'k', 1, 'v', 1, 'k', 1, 'w'}));  // the same key twice
  EXPECT_FALSE(with({1, 1, 'k', 2, 'v', '\n'}));            // would split the log line
  EXPECT_FALSE(with({1, 1, 'k', 2, 'v', ' '}));             // nor spaces
  EXPECT_FALSE(with({1, 1, 0x80, 1, 'v'}));                 // nor anything beyond ASCII
  EXPECT_FALSE(with({1, 1, 'k'}));                          // no value
}

TEST(PeerMessages, Heartbeat_RoundTrip) {
  for (Role r : {Role::Primary, Role::Backup}) {
    for (Mode m : {Mode::Starting, Mode::Duplex, Mode::Simplex}) {
      Heartbeat h{r, m, 0xfedcba9876543210ull};
      auto back = decode_heartbeat(encoded(h));
      ASSERT_TRUE(back.has_value());
      EXPECT_EQ(back->role, r);
      EXPECT_EQ(back->mode, m);
      EXPECT_EQ(back->boot_id, h.boot_id);
    }
  }
}

TEST(PeerMessages, Heartbeat_GoldenBytes) {
  const Bytes golden{0, 2, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
  EXPECT_EQ(encoded(Heartbeat{Role::Primary, Mode::Simplex, 0xfedcba9876543210ull}), golden);
}

TEST(PeerMessages, Heartbeat_TruncatedOversizedOrInvalidRefused) {
  const Bytes good = encoded(Heartbeat{Role::Primary, Mode::Simplex, 42});
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode_heartbeat(Bytes(good.begin(), good.begin() + static_cast<long>(n))))
        << "prefix of " << n;
  EXPECT_FALSE(decode_heartbeat(cat(good, {0})));
  Bytes bad_role = good, bad_mode = good;
  bad_role[0] = 2;
  bad_mode[1] = 3;
  EXPECT_FALSE(decode_heartbeat(bad_role));
  EXPECT_FALSE(decode_heartbeat(bad_mode));
}

// ---------------------------------------------------------------------------------------------
// Per-connection messages: one row per type, with its golden bytes and the length of its fixed
// part (what must arrive before any trailing data).

struct ConnCase {
  const char* name;
  ConnMessage message;
  Bytes golden;
  size_t fixed;       // bytes before the trailing data (key and integers)
  bool has_trailing;  // Has (window edge) and Reply (reply bytes) carry data after the fixed part
};

const Bytes kReplyData{'H', 'T', 'T', 'P', '/', '1', '.', '1', ' ', '2', '0', '0'};
const Bytes kHasEdge{1, 0x00, 0x01, 0x00, 0x00};  // edge present, right = 0x00010000

std::vector<ConnCase> conn_cases() {
  return {
      {"Has without edge",
       {Type::Has, kKey, 0xfffffff1u, 0, {}},
       cat(kKeyBytes, {0xff, 0xff, 0xff, 0xf1}),
       14,
       true},
      {"Has with edge",
       {Type::Has, kKey, 0xfffffff1u, 0, kHasEdge},
       cat(kKeyBytes, {0xff, 0xff, 0xff, 0xf1, 1, 0x00, 0x01, 0x00, 0x00}),
       14,
       true},
      {"Reply with data",
       {Type::Reply, kKey, 0x0000000100000002ull, 0, kReplyData},
       cat(cat(kKeyBytes, {0, 0, 0, 1, 0, 0, 0, 2}), kReplyData),
       18,
       true},
      {"ReplyEnd",
       {Type::ReplyEnd, kKey, 4096, 3, {}},
       cat(kKeyBytes, {0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0x10, 0}),
       26,
       false},
      {"Close",
       {Type::Close, kKey, 5000, 0, {}},
       cat(kKeyBytes, {0, 0, 0, 0, 0, 0, 0x13, 0x88}),
       18,
       false},
      {"ReplyAck",
       {Type::ReplyAck, kKey, 5001, 0, {}},
       cat(kKeyBytes, {0, 0, 0, 0, 0, 0, 0x13, 0x89}),
       18,
       false},
      {"Abort", {Type::Abort, kKey, 0, 0, {}}, kKeyBytes, 10, false},
  };
}

TEST(PeerMessages, ConnMessages_RoundTripAndGoldenBytes) {
  for (const ConnCase& c : conn_cases()) {
    SCOPED_TRACE(c.name);
    const Bytes wire_bytes = encoded(c.message);
    EXPECT_EQ(wire_bytes, c.golden);
    auto back = decode_conn(c.message.type, wire_bytes);
    ASSERT_TRUE(back.has_value());
    expect_same(*back, c.message);
  }
}

TEST(PeerMessages, ConnMessages_TruncatedRefused) {
  for (const ConnCase& c : conn_cases()) {
    SCOPED_TRACE(c.name);
    const Bytes good = encoded(c.message);
    for (size_t n = 0; n < c.fixed; ++n)
      EXPECT_FALSE(decode_conn(c.message.type, Bytes(good.begin(), good.begin() + long(n))))
          << "prefix of " << n;
  }
}

// Fixed-size messages refuse a trailing byte. Has and Reply take trailing bytes as their data by
// design (the frame's authenticated length bounds them); a Has whose data is not a valid edge is
// refused by decode_has (MalformedHasExtraIsRejected).
TEST(PeerMessages, ConnMessages_OversizedRefused) {
  for (const ConnCase& c : conn_cases()) {
    SCOPED_TRACE(c.name);
    auto longer = decode_conn(c.message.type, cat(encoded(c.message), {0x55}));
    if (c.has_trailing) {
      ASSERT_TRUE(longer.has_value());
      EXPECT_EQ(longer->data.size(), c.message.data.size() + 1);
    } else {
      EXPECT_FALSE(longer.has_value());
    }
  }
}

TEST(PeerMessages, ConnMessages_UnknownTypesRefused) {
  const Bytes payload = cat(kKeyBytes, {0, 0, 0, 0, 0, 0, 0, 0});
  for (Type t : {Type::Hello, Type::Heartbeat, Type::Relay, Type::Stray, static_cast<Type>(0),
                 static_cast<Type>(8), static_cast<Type>(255)})
    EXPECT_FALSE(decode_conn(t, payload).has_value()) << int(t);
}

// ---------------------------------------------------------------------------------------------
// Has and its window edge (HasReport).

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

TEST(PeerMessages, HasExtra_GoldenBytes) {
  HasReport r;
  r.has = SeqNum(1);
  r.right = SeqNum(0x00010000u);
  Bytes extra;
  encode_has_extra(extra, r);
  EXPECT_EQ(extra, kHasEdge);
  r.right.reset();
  extra.clear();
  encode_has_extra(extra, r);
  EXPECT_EQ(extra, (Bytes{0, 0, 0, 0, 0}));  // flag clear, edge zero
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
