// Tests of the message layer's adapter (src/message/message_layer.hpp) that need no socket: a
// backup's replicas exist before their client is accepted, so peer frames alone create them. Read
// message_session_test.cpp first (one connection's logic); this file checks what the adapter does
// across connections, named <State>_<Event>.
#include "message/message_layer.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "sys/event_loop.hpp"

namespace us::message {
namespace {

const ConnKey kOld{wire::Ipv4Addr(198, 18, 0, 2), 40000, 5000};
const ConnKey kNew{wire::Ipv4Addr(198, 18, 0, 3), 40001, 6000};

struct Sent {
  peer::Type type;
  ConnKey key;
  uint64_t value = 0;
  bool operator==(const Sent&) const = default;
};
std::ostream& operator<<(std::ostream& o, const Sent& s) {
  return o << "{type " << static_cast<int>(s.type) << ", " << s.key.to_string() << ", value "
           << s.value << "}";
}

struct FakeLink : peer::ConnSender {
  std::vector<Sent> sent;
  void send(const peer::ConnMessage& m) override { sent.push_back({m.type, m.key, m.value}); }
};

struct NoFlows : Flows {
  std::optional<ConnKey> key_for(const wire::Endpoint&) const override { return std::nullopt; }
  void local_has(const wire::Endpoint&, wire::SeqNum) override {}
};

class MessageLayerTest : public ::testing::Test {
 protected:
  MessageLayerTest() {
    Settings s;
    s.role = Role::Backup;
    s.mode = [this] { return mode; };
    layer = std::make_unique<MessageLayer>(loop, flows, link, std::move(s));
  }
  void reply(const ConnKey& key, uint64_t offset, const std::string& data) {
    layer->on_peer_message({peer::Type::Reply,
                            key,
                            offset,
                            0,
                            {reinterpret_cast<const uint8_t*>(data.data()), data.size()}});
  }

  Mode mode = Mode::Duplex;
  sys::EventLoop loop;
  NoFlows flows;
  FakeLink link;
  std::unique_ptr<MessageLayer> layer;
};

// A survivor whose peer rejoins: what is open now is unprotected (its ReplyAck owed to the old
// peer is not sent, and the new peer's frames for it are ignored); what opens later is protected.
TEST_F(MessageLayerTest, BackupDuplex_MarkUnprotected_CountsAndStopsReplicatingOldConnections) {
  reply(kOld, 0, "HTTP/1.1");
  EXPECT_EQ(layer->connections(), 1u);
  EXPECT_EQ(layer->protected_connections(), 1u);
  EXPECT_EQ(layer->unprotected_connections(), 0u);

  layer->mark_unprotected();  // before the flush that would have acknowledged those bytes
  EXPECT_EQ(layer->protected_connections(), 0u);
  EXPECT_EQ(layer->unprotected_connections(), 1u);
  reply(kOld, 8, " 200");
  reply(kNew, 0, "HTTP/1.1");
  layer->flush();
  EXPECT_EQ(link.sent, (std::vector<Sent>{{peer::Type::ReplyAck, kNew, 8}}));
  EXPECT_EQ(layer->connections(), 2u);
  EXPECT_EQ(layer->protected_connections(), 1u);
  EXPECT_EQ(layer->unprotected_connections(), 1u);

  layer->mark_unprotected();  // again: now both
  EXPECT_EQ(layer->unprotected_connections(), 2u);
  EXPECT_EQ(layer->protected_connections(), 0u);
}

// The primary refused a connection (limits.max_connections_per_source) or closed it before any
// reply: its Close at offset 0 may come before the backup accepts the connection, and must make
// the replica (acknowledged at once) so the backup's FIN follows it. A Close anywhere else for a
// connection the backup no longer has is a leftover of one that ended here first.
TEST_F(MessageLayerTest, BackupDuplex_CloseAtZeroForAnUnknownConnection_MakesTheReplica) {
  layer->on_peer_message({peer::Type::Close, kNew, 0, 0, {}});
  EXPECT_EQ(layer->connections(), 1u);
  EXPECT_EQ(link.sent, (std::vector<Sent>{{peer::Type::ReplyAck, kNew, 1}}));
  layer->on_peer_message({peer::Type::Close, kOld, 5, 0, {}});
  EXPECT_EQ(layer->connections(), 1u);
}

}  // namespace
}  // namespace us::message
