#include <gtest/gtest.h>

#include <vector>

#include "peer/replication.hpp"

namespace us::peer {
namespace {

const ConnKey kKey{wire::Ipv4Addr(198, 18, 0, 2), 40000, 77};

struct Recorder final : FrameLink {
  bool is_up = true;
  std::vector<std::pair<Type, std::vector<uint8_t>>> sent;
  bool up() const override { return is_up; }
  void send(Type t, std::span<const uint8_t> p) override {
    sent.emplace_back(t, std::vector(p.begin(), p.end()));
  }
};

struct ReplicationTest : ::testing::Test {
  std::vector<std::pair<ConnKey, HasReport>> has;
  std::vector<std::pair<Type, uint64_t>> messages;
  int leavings = 0;
  std::vector<Adoption> adopted;
  std::vector<ConnKey> refused, confirmed;
  Replication primary{{[this](const ConnKey& k, const HasReport& r) { has.emplace_back(k, r); },
                       [this](const ConnMessage& m) { messages.emplace_back(m.type, m.value); },
                       [this] { ++leavings; }, [this](const Adoption& a) { adopted.push_back(a); },
                       [this](const ConnKey& k) { refused.push_back(k); },
                       [this](const ConnKey& k) { confirmed.push_back(k); }}};
  Replication backup{{nullptr,
                      [this](const ConnMessage& m) { messages.emplace_back(m.type, m.value); },
                      [this] { ++leavings; }, [this](const Adoption& a) { adopted.push_back(a); },
                      [this](const ConnKey& k) { refused.push_back(k); },
                      [this](const ConnKey& k) { confirmed.push_back(k); }}};
  Recorder link;
};

TEST_F(ReplicationTest, Send_EncodesOntoTheLinkWhileUp) {
  primary.attach(link);
  const std::vector<uint8_t> data = {'h', 'i'};
  primary.send({Type::Reply, kKey, 4096, 0, data});
  ASSERT_EQ(link.sent.size(), 1u);
  EXPECT_EQ(link.sent[0].first, Type::Reply);
  std::vector<uint8_t> expected;
  encode(expected, ConnMessage{Type::Reply, kKey, 4096, 0, data});
  EXPECT_EQ(link.sent[0].second, expected);
}

TEST_F(ReplicationTest, Send_DroppedWhileDownOrUnattached) {
  primary.send({Type::Close, kKey, 1, 0, {}});  // not attached yet
  primary.attach(link);
  link.is_up = false;
  primary.send({Type::Close, kKey, 1, 0, {}});
  EXPECT_TRUE(link.sent.empty());
}

TEST_F(ReplicationTest, Has_BackupToPrimaryReachesThePacketLayerOnly) {
  backup.attach(link);
  HasReport r{wire::SeqNum(1234), wire::SeqNum(99999)};
  backup.send_has(kKey, r);
  ASSERT_EQ(link.sent.size(), 1u);
  EXPECT_EQ(link.sent[0].first, Type::Has);
  primary.on_frame(link.sent[0].first, link.sent[0].second);
  ASSERT_EQ(has.size(), 1u);
  EXPECT_EQ(has[0].first, kKey);
  EXPECT_EQ(has[0].second, r);
  EXPECT_TRUE(messages.empty());
}

TEST_F(ReplicationTest, Has_OnTheBackupIsDropped) {
  std::vector<uint8_t> b;
  encode(b, ConnMessage{Type::Has, kKey, 5, 0, {}});
  backup.on_frame(Type::Has, b);
  EXPECT_TRUE(has.empty());
  EXPECT_TRUE(messages.empty());
  EXPECT_EQ(backup.malformed(), 0u);
}

TEST_F(ReplicationTest, Message_EverythingElseGoesToTheMessageLayer) {
  for (Type t : {Type::Reply, Type::ReplyEnd, Type::Close, Type::ReplyAck, Type::Abort}) {
    std::vector<uint8_t> b;
    encode(b, ConnMessage{t, kKey, 42, 1, {}});
    primary.on_frame(t, b);
  }
  ASSERT_EQ(messages.size(), 5u);
  EXPECT_EQ(messages[0], std::make_pair(Type::Reply, uint64_t{42}));
  EXPECT_EQ(messages[4], std::make_pair(Type::Abort, uint64_t{0}));  // Abort has no value
  EXPECT_TRUE(has.empty());
}

TEST_F(ReplicationTest, Malformed_CountedAndDropped) {
  primary.on_frame(Type::Reply, std::vector<uint8_t>{1, 2, 3});
  std::vector<uint8_t> extra = {2, 0, 0, 0, 0};  // unknown flag in the Has extra
  std::vector<uint8_t> b;
  encode(b, ConnMessage{Type::Has, kKey, 5, 0, extra});
  primary.on_frame(Type::Has, b);
  EXPECT_EQ(primary.malformed(), 2u);
  EXPECT_TRUE(has.empty());
  EXPECT_TRUE(messages.empty());
}

// Planned handover: Leaving travels after everything sent before it, carries nothing, and reaches
// the mode machine's handler, not the layers.
TEST_F(ReplicationTest, Leaving_SentAfterEarlierMessagesAndDispatchedToItsHandler) {
  primary.attach(link);
  primary.send({Type::ReplyEnd, kKey, 100, 0, {}});
  primary.send_leaving();
  ASSERT_EQ(link.sent.size(), 2u);
  EXPECT_EQ(link.sent[0].first, Type::ReplyEnd);
  EXPECT_EQ(link.sent[1].first, Type::Leaving);
  EXPECT_TRUE(link.sent[1].second.empty());
  for (const auto& [type, payload] : link.sent) backup.on_frame(type, payload);
  EXPECT_EQ(leavings, 1);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].first, Type::ReplyEnd);
  EXPECT_EQ(backup.malformed(), 0u);
}

TEST_F(ReplicationTest, Leaving_NotSentWhileTheLinkIsDown) {
  primary.attach(link);
  link.is_up = false;
  primary.send_leaving();
  EXPECT_TRUE(link.sent.empty());
}

TEST_F(ReplicationTest, Adopt_SurvivorToJoinerReachesTheAdoptHandlerOnly) {
  primary.attach(link);
  Adoption a{kKey, wire::SeqNum(5000), wire::SeqNum(90000), 512, 7, uint8_t{7}, 1460, true, {}};
  primary.send_adopt(a);
  ASSERT_EQ(link.sent.size(), 1u);
  EXPECT_EQ(link.sent[0].first, Type::Adopt);
  backup.on_frame(link.sent[0].first, link.sent[0].second);
  ASSERT_EQ(adopted.size(), 1u);
  EXPECT_EQ(adopted[0], a);
  EXPECT_TRUE(messages.empty());
  EXPECT_TRUE(refused.empty());
}

TEST_F(ReplicationTest, AdoptRefused_JoinerToSurvivorReachesTheRefusedHandlerOnly) {
  backup.attach(link);
  backup.send_adopt_refused(kKey);
  ASSERT_EQ(link.sent.size(), 1u);
  EXPECT_EQ(link.sent[0].first, Type::AdoptRefused);
  primary.on_frame(link.sent[0].first, link.sent[0].second);
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0], kKey);
  EXPECT_TRUE(messages.empty());
  EXPECT_TRUE(adopted.empty());
}

// The Adopt layout (peer/messages.hpp), byte for byte, with and without a client window scale.
TEST(AdoptMessage, EncodesItsLayoutAndDecodesBack) {
  Adoption a{
      kKey, wire::SeqNum(0x01020304), wire::SeqNum(0xA0B0C0D0), 0x1234, 7, uint8_t{8}, 1460, true,
      {}};
  std::vector<uint8_t> b;
  encode(b, a);
  const std::vector<uint8_t> golden = {
      198,  18,   0,    2,    0x9c, 0x40, 0,    0,    0, 77,  // key: ip, port 40000, isn
      0x01, 0x02, 0x03, 0x04, 0xA0, 0xB0, 0xC0, 0xD0,         // client_next, server_next
      0x12, 0x34, 7,    8,    0x05, 0xb4, 1};  // window, shift, client wscale, MSS 1460, SACK
  EXPECT_EQ(b, golden);
  EXPECT_EQ(decode_adoption(b), a);
  a.client_wscale.reset();
  a.sack_permitted = false;
  b.clear();
  encode(b, a);
  EXPECT_EQ(b[21], 0xff);  // no window scale
  EXPECT_EQ(decode_adoption(b), a);
  for (size_t at : {size_t{20}, size_t{21}, size_t{24}}) {  // shift 15, wscale 15, SACK 2
    auto bad = b;
    bad[at] = at == 24 ? 2 : 15;
    EXPECT_FALSE(decode_adoption(bad).has_value()) << at;
  }
  a.unread = {'G', 'E', 'T'};  // the next request, unread by the survivor: the rest
  b.clear();
  encode(b, a);
  EXPECT_EQ(b.size(), 25u + 3u);
  EXPECT_EQ(decode_adoption(b), a);
  b.resize(24);
  EXPECT_FALSE(decode_adoption(b).has_value());  // cut inside the fixed part
}

TEST_F(ReplicationTest, Adopted_JoinerToSurvivorReachesTheAdoptedHandlerOnly) {
  backup.attach(link);
  backup.send_adopted(kKey);
  ASSERT_EQ(link.sent.size(), 1u);
  EXPECT_EQ(link.sent[0].first, Type::Adopted);
  primary.on_frame(link.sent[0].first, link.sent[0].second);
  EXPECT_EQ(confirmed, std::vector<ConnKey>{kKey});
  EXPECT_TRUE(refused.empty());
  EXPECT_TRUE(messages.empty());
}

TEST_F(ReplicationTest, Adopt_MalformedIsCountedAndDropped) {
  std::vector<uint8_t> b;
  encode(b, Adoption{kKey, wire::SeqNum(1), wire::SeqNum(2), 0, 0, std::nullopt, 536, false, {}});
  b.pop_back();
  backup.on_frame(Type::Adopt, b);
  EXPECT_TRUE(adopted.empty());
  EXPECT_EQ(backup.malformed(), 1u);
}

}  // namespace
}  // namespace us::peer
