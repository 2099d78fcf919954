#include <gtest/gtest.h>

#include <vector>

#include "peer/datagram.hpp"

namespace us::peer {
namespace {

const wire::Ipv4Addr kPrimary(10, 0, 0, 1), kBackup(10, 0, 0, 2), kStranger(10, 0, 0, 66);

crypto::Key key(uint8_t fill) {
  crypto::Key k{};
  k.fill(fill);
  return k;
}

std::vector<uint8_t> heartbeat(uint64_t boot_id) {
  std::vector<uint8_t> b;
  encode(b, Heartbeat{Role::Backup, Mode::Duplex, boot_id});
  return b;
}

// The backup seals, the primary opens: each side names the other as its peer.
struct DatagramPair : ::testing::Test {
  Datagrams backup{key(7), Role::Backup, kPrimary};
  Datagrams primary{key(7), Role::Primary, kBackup};

  std::vector<uint8_t> seal(Type t, std::span<const uint8_t> payload) {
    std::vector<uint8_t> out;
    backup.seal(out, t, payload);
    return out;
  }
  DatagramReject reason(std::span<const uint8_t> bytes, wire::Ipv4Addr from = kBackup) {
    auto r = primary.open(bytes, from);
    EXPECT_FALSE(r.ok());
    return r.ok() ? DatagramReject::UnknownType : r.error().reason;
  }
};

TEST_F(DatagramPair, RelayRoundTrip) {
  const std::vector<uint8_t> packet = {0x45, 0, 0, 20, 1, 2, 3};
  auto bytes = seal(Type::Relay, packet);
  EXPECT_EQ(bytes.size(), packet.size() + kDatagramOverhead);
  auto d = primary.open(bytes, kBackup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->type, Type::Relay);
  EXPECT_EQ(d->counter, 1u);
  EXPECT_EQ(std::vector<uint8_t>(d->payload.begin(), d->payload.end()), packet);
  EXPECT_FALSE(d->heartbeat.has_value());
  EXPECT_EQ(primary.rejected(), 0u);
}

TEST_F(DatagramPair, HeartbeatRoundTripAndCountersGrowByOne) {
  auto first = seal(Type::Stray, std::vector<uint8_t>{9});
  auto hb = seal(Type::Heartbeat, heartbeat(1000));
  auto d = primary.open(hb, kBackup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->type, Type::Heartbeat);
  EXPECT_EQ(d->counter, 2u);
  ASSERT_TRUE(d->heartbeat.has_value());
  EXPECT_EQ(d->heartbeat->role, Role::Backup);
  EXPECT_EQ(d->heartbeat->mode, Mode::Duplex);
  EXPECT_EQ(d->heartbeat->boot_id, 1000u);
  auto s = primary.open(first, kBackup);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->type, Type::Stray);
  EXPECT_EQ(s->counter, 1u);
}

TEST_F(DatagramPair, WrongSourceIsRejectedBeforeAnythingElse) {
  auto bytes = seal(Type::Relay, std::vector<uint8_t>{1});
  EXPECT_EQ(reason(bytes, kStranger), DatagramReject::WrongSource);
  EXPECT_EQ(primary.rejected(DatagramReject::WrongSource), 1u);
  EXPECT_EQ(primary.rejected(), 1u);
  EXPECT_TRUE(primary.open(bytes, kBackup).ok());
}

TEST_F(DatagramPair, ForgedShortAndWrongKeyAreUnauthenticated) {
  auto bytes = seal(Type::Relay, std::vector<uint8_t>{1, 2, 3});
  auto forged = bytes;
  forged[crypto::kFrameHeader] ^= 0x01;  // a payload byte
  auto r = primary.open(forged, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Unauthenticated);
  EXPECT_EQ(r.error().auth, crypto::AuthError::BadTag);

  std::vector<uint8_t> shorter(bytes.begin(), bytes.begin() + 20);
  r = primary.open(shorter, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Unauthenticated);
  EXPECT_EQ(r.error().auth, crypto::AuthError::TooShort);

  Datagrams other{key(8), Role::Backup, kPrimary};
  std::vector<uint8_t> wrong_key;
  other.seal(wrong_key, Type::Relay, std::vector<uint8_t>{1, 2, 3});
  r = primary.open(wrong_key, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Unauthenticated);
  EXPECT_EQ(r.error().auth, crypto::AuthError::BadTag);

  EXPECT_EQ(primary.rejected(DatagramReject::Unauthenticated), 3u);
  EXPECT_EQ(primary.rejected(), 3u);
}

// Issue 10, peer plane: one key per direction. A heartbeat captured on the LAN and sent back to
// its sender with the peer's source address would otherwise pass for the peer's and force a
// failover; a peer configured with our role seals with our direction's key too.
TEST_F(DatagramPair, ReflectedOrSameRole_Unauthenticated) {
  std::vector<uint8_t> own;
  primary.seal(own, Type::Heartbeat, heartbeat(42));
  auto r = primary.open(own, kBackup);  // reflected: our own datagram, spoofed peer source
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Unauthenticated);
  Datagrams second_primary{key(7), Role::Primary, kPrimary};
  std::vector<uint8_t> same_role;
  second_primary.seal(same_role, Type::Heartbeat, heartbeat(43));
  r = primary.open(same_role, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Unauthenticated);
  EXPECT_TRUE(primary.open(seal(Type::Heartbeat, heartbeat(44)), kBackup).ok());  // the peer's
}

TEST_F(DatagramPair, MalformedHeartbeatAndUnknownTypeAreRejectedButNotCountedInTheTotal) {
  EXPECT_EQ(reason(seal(Type::Heartbeat, std::vector<uint8_t>{1, 2})),
            DatagramReject::MalformedHeartbeat);
  EXPECT_EQ(reason(seal(Type::Reply, std::vector<uint8_t>{1})), DatagramReject::UnknownType);
  EXPECT_EQ(primary.rejected(DatagramReject::MalformedHeartbeat), 1u);
  EXPECT_EQ(primary.rejected(DatagramReject::UnknownType), 1u);
  EXPECT_EQ(primary.rejected(), 0u);  // status' rejected_datagrams counts as before the split
}

TEST_F(DatagramPair, Heartbeat_OlderBootIdIsRejected) {
  auto old_run = seal(Type::Heartbeat, heartbeat(1000));
  auto new_run = seal(Type::Heartbeat, heartbeat(2000));
  ASSERT_TRUE(primary.open(new_run, kBackup).ok());
  // A recording of the previous run, even with a higher counter than anything seen.
  Datagrams earlier{key(7), Role::Backup, kPrimary};
  std::vector<uint8_t> replay;
  for (int i = 0; i < 5; ++i) {
    replay.clear();
    earlier.seal(replay, Type::Heartbeat, heartbeat(1000));
  }
  EXPECT_EQ(reason(replay), DatagramReject::ReplayedHeartbeat);
  EXPECT_EQ(reason(old_run), DatagramReject::ReplayedHeartbeat);
  EXPECT_EQ(primary.rejected(DatagramReject::ReplayedHeartbeat), 2u);
  EXPECT_EQ(primary.rejected(), 2u);
}

TEST_F(DatagramPair, Heartbeat_SameBootIdCounterMustGrow) {
  auto a = seal(Type::Heartbeat, heartbeat(1000));
  auto b = seal(Type::Heartbeat, heartbeat(1000));
  ASSERT_TRUE(primary.open(b, kBackup).ok());
  EXPECT_EQ(reason(b), DatagramReject::ReplayedHeartbeat);  // the same one again
  EXPECT_EQ(reason(a), DatagramReject::ReplayedHeartbeat);  // an earlier one, late
  auto c = seal(Type::Heartbeat, heartbeat(1000));
  auto d = primary.open(c, kBackup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->counter, 3u);
}

TEST_F(DatagramPair, Heartbeat_NewerBootIdIsAcceptedWhateverTheCounter) {
  auto hb = seal(Type::Heartbeat, heartbeat(1000));
  for (int i = 0; i < 3; ++i) hb = seal(Type::Heartbeat, heartbeat(1000));
  ASSERT_TRUE(primary.open(hb, kBackup).ok());          // counter 4
  Datagrams restarted{key(7), Role::Backup, kPrimary};  // a new run counts from 1 again
  std::vector<uint8_t> fresh;
  restarted.seal(fresh, Type::Heartbeat, heartbeat(2000));
  auto d = primary.open(fresh, kBackup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->counter, 1u);
  EXPECT_EQ(d->heartbeat->boot_id, 2000u);
}

TEST_F(DatagramPair, Relay_ReorderedPass_ReplayedAreRejected) {
  auto relay = seal(Type::Relay, std::vector<uint8_t>{1});
  auto stray = seal(Type::Stray, std::vector<uint8_t>{2});
  ASSERT_TRUE(primary.open(seal(Type::Heartbeat, heartbeat(1000)), kBackup).ok());  // counter 3
  // Older than the newest heartbeat but not seen: UDP reordered them, they pass once.
  EXPECT_TRUE(primary.open(stray, kBackup).ok());
  EXPECT_TRUE(primary.open(relay, kBackup).ok());
  // The same datagrams again: a host on the LAN playing them back.
  EXPECT_EQ(reason(relay), DatagramReject::ReplayedPacket);
  EXPECT_EQ(reason(stray), DatagramReject::ReplayedPacket);
  EXPECT_EQ(primary.rejected(DatagramReject::ReplayedPacket), 2u);
  EXPECT_EQ(primary.rejected(), 2u);
}

TEST_F(DatagramPair, Relay_OlderThanTheWindow_Rejected) {
  auto old = seal(Type::Relay, std::vector<uint8_t>{1});
  for (uint64_t i = 0; i < ReplayWindow::kSize; ++i) seal(Type::Relay, std::vector<uint8_t>{2});
  auto newest = seal(Type::Relay, std::vector<uint8_t>{3});
  ASSERT_TRUE(primary.open(newest, kBackup).ok());
  EXPECT_EQ(reason(old), DatagramReject::ReplayedPacket);
}

TEST_F(DatagramPair, Relay_RestartedPeer_CountsAboveItsPreviousRun) {
  Datagrams first_run{key(7), Role::Backup, kPrimary, /*boot_id=*/1000};
  // Boot ids 3 us apart: 3072 counters, more than the first run sends here.
  Datagrams second_run{key(7), Role::Backup, kPrimary, /*boot_id=*/1003};
  std::vector<uint8_t> a, b;
  for (int i = 0; i < 2000; ++i) {
    a.clear();
    first_run.seal(a, Type::Relay, std::vector<uint8_t>{1});
    ASSERT_TRUE(primary.open(a, kBackup).ok());
  }
  second_run.seal(b, Type::Relay, std::vector<uint8_t>{2});
  auto d = primary.open(b, kBackup);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->counter, 1003u * 1024 + 1);
  EXPECT_EQ(reason(a), DatagramReject::ReplayedPacket);  // the first run's last, played back
}

TEST_F(DatagramPair, Heartbeat_NewRun_RestartsTheWindow) {
  // A peer whose clock stepped back between runs counts lower than before; its heartbeat (a newer
  // boot id) proves the new run, and its relays pass from then on.
  Datagrams high{key(7), Role::Backup, kPrimary, /*boot_id=*/5000};
  std::vector<uint8_t> out;
  high.seal(out, Type::Heartbeat, heartbeat(5000));
  ASSERT_TRUE(primary.open(out, kBackup).ok());
  auto low_relay = seal(Type::Relay, std::vector<uint8_t>{1});  // counter 1
  EXPECT_EQ(reason(low_relay), DatagramReject::ReplayedPacket);
  ASSERT_TRUE(primary.open(seal(Type::Heartbeat, heartbeat(6000)), kBackup).ok());  // counter 2
  EXPECT_TRUE(primary.open(seal(Type::Relay, std::vector<uint8_t>{3}), kBackup).ok());
}

TEST_F(DatagramPair, Heartbeat_OurOwnRoleOrBootId_Reflected) {
  Datagrams me{key(7), Role::Primary, kBackup, /*boot_id=*/4242};
  Datagrams peer{key(7), Role::Backup, kPrimary};
  std::vector<uint8_t> hb, out;
  // A heartbeat (under the backup's key, so it authenticates) that claims the primary's role...
  encode(hb, Heartbeat{Role::Primary, Mode::Duplex, 7000});
  peer.seal(out, Type::Heartbeat, hb);
  auto r = me.open(out, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Reflected);
  // ...or carries our own boot id.
  hb.clear();
  out.clear();
  encode(hb, Heartbeat{Role::Backup, Mode::Duplex, 4242});
  peer.seal(out, Type::Heartbeat, hb);
  r = me.open(out, kBackup);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().reason, DatagramReject::Reflected);
  EXPECT_EQ(me.rejected(), 2u);
  // The peer's own heartbeat still passes.
  out.clear();
  peer.seal(out, Type::Heartbeat, heartbeat(7000));
  EXPECT_TRUE(me.open(out, kBackup).ok());
}

TEST(ReplayWindow, EachCounterOnceWithinTheWindow) {
  ReplayWindow w;
  EXPECT_TRUE(w.accept(10));
  EXPECT_TRUE(w.accept(8));
  EXPECT_FALSE(w.accept(8));
  EXPECT_FALSE(w.accept(10));
  // Newest 10 + kSize - 1: the window is [10, 10 + kSize - 1]; 10 is still in it (and seen), 9 not.
  EXPECT_TRUE(w.accept(10 + ReplayWindow::kSize - 1));
  EXPECT_FALSE(w.accept(10));
  EXPECT_FALSE(w.accept(9));
  EXPECT_TRUE(w.accept(8 + ReplayWindow::kSize));  // same bit as 8, which fell out of the window
  EXPECT_FALSE(w.accept(8 + ReplayWindow::kSize));
  // A jump larger than the window forgets everything below it.
  EXPECT_TRUE(w.accept(100000));
  EXPECT_FALSE(w.accept(100000 - ReplayWindow::kSize));
  EXPECT_TRUE(w.accept(100000 - ReplayWindow::kSize + 1));
  w.restart(5);
  EXPECT_FALSE(w.accept(5));
  EXPECT_TRUE(w.accept(4));
}

}  // namespace
}  // namespace us::peer
