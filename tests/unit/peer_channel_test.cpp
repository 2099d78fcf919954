// The replication channel (src/peer/channel.hpp) over real loopback sockets: a primary and a
// backup Channel, each on its own sys::EventLoop, both loops driven from this one thread a short
// turn at a time until the awaited event is seen or a deadline passes (no sleeps, no threads).
// Read channel.hpp first: the primary listens on local:port, the backup connects from local to
// remote:port, and the first frame each way is a Hello.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "crypto/frame_auth.hpp"
#include "peer/channel.hpp"
#include "sys/fd.hpp"

namespace us::peer {
namespace {

using namespace std::chrono_literals;
using Bytes = std::vector<uint8_t>;

const wire::Ipv4Addr kLoopback(127, 0, 0, 1);

// A port nobody listens on now: bind to port 0 and let the kernel choose.
uint16_t free_port() {
  sys::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(kLoopback.v);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return 0;
  socklen_t len = sizeof a;
  if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) return 0;
  return ntohs(a.sin_port);
}

crypto::Key key_of(uint8_t fill) {
  crypto::Key k;
  k.fill(fill);
  return k;
}

// One side: its loop, its channel and what the channel told it.
struct Side {
  sys::EventLoop loop;
  std::unique_ptr<Channel> channel;
  std::vector<Hello> ups;
  std::vector<std::pair<Type, Bytes>> messages;
  std::vector<std::string> downs;
  std::vector<std::pair<std::string, std::string>> shared;  // sent in our Hello
  bool accept = true;                                       // what `up` answers

  void open(Role role, Mode mode, uint64_t boot_id, uint16_t port, const crypto::Key& key) {
    ChannelSettings s{role, kLoopback, kLoopback, port, key, boot_id, [mode] { return mode; }};
    s.shared = shared;
    Channel::Events ev{[this](const Hello& h) {
                         ups.push_back(h);
                         return accept;
                       },
                       [this](Type t, std::span<const uint8_t> p) {
                         messages.emplace_back(t, Bytes(p.begin(), p.end()));
                       },
                       [this](const std::string& why) { downs.push_back(why); }};
    channel = std::make_unique<Channel>(loop, std::move(s), std::move(ev));
    auto started = channel->start();
    ASSERT_TRUE(started.ok()) << started.error();
  }
  // One short turn: whatever is ready now, or up to 1 ms of waiting for it.
  void turn() {
    loop.after(1ms, [this] { loop.stop(); });
    loop.run();
  }
};

class PeerChannelTest : public ::testing::Test {
 protected:
  Side primary, backup;
  uint16_t port = free_port();

  void SetUp() override { ASSERT_NE(port, 0) << "no free loopback port"; }

  // Turns both loops, alternately, until `done` or the deadline; says which.
  bool run_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    while (!done()) {
      if (std::chrono::steady_clock::now() > deadline) return false;
      primary.turn();
      backup.turn();
    }
    return true;
  }

  void open_both(const crypto::Key& primary_key, const crypto::Key& backup_key) {
    primary.open(Role::Primary, Mode::Duplex, 111, port, primary_key);
    backup.open(Role::Backup, Mode::Starting, 222, port, backup_key);
  }
  void bring_up() {
    open_both(key_of(7), key_of(7));
    ASSERT_TRUE(run_until([&] { return primary.channel->up() && backup.channel->up(); }))
        << "the channel did not come up within 5 s";
  }
};

TEST_F(PeerChannelTest, Idle_BothStart_EachSeesThePeersHello) {
  bring_up();
  ASSERT_EQ(primary.ups.size(), 1u);
  EXPECT_EQ(primary.ups[0].role, Role::Backup);
  EXPECT_EQ(primary.ups[0].mode, Mode::Starting);
  EXPECT_EQ(primary.ups[0].boot_id, 222u);
  ASSERT_EQ(backup.ups.size(), 1u);
  EXPECT_EQ(backup.ups[0].role, Role::Primary);
  EXPECT_EQ(backup.ups[0].mode, Mode::Duplex);
  EXPECT_EQ(backup.ups[0].boot_id, 111u);
  EXPECT_EQ(primary.channel->rejected(), 0u);
  EXPECT_EQ(backup.channel->rejected(), 0u);
  EXPECT_TRUE(primary.downs.empty());
  EXPECT_TRUE(backup.downs.empty());
}

// Each Hello carries its sender's shared settings (config::shared_settings), unchanged.
TEST_F(PeerChannelTest, Idle_BothStart_EachSeesThePeersSettings) {
  primary.shared = {{"heartbeat.timeout_ms", "100"}, {"tun.mtu", "1400"}};
  backup.shared = {{"heartbeat.timeout_ms", "500"}};
  bring_up();
  ASSERT_EQ(primary.ups.size(), 1u);
  ASSERT_EQ(backup.ups.size(), 1u);
  EXPECT_EQ(primary.ups[0].settings, backup.shared);
  EXPECT_EQ(backup.ups[0].settings, primary.shared);
}

// Both nodes refuse each other (their configs differ): each still gets the other's Hello (the
// refusing side writes its own out before it closes), neither reports `down`, and each waits for
// the next connection: the backup connects again, the primary accepts it, and both refuse again.
TEST_F(PeerChannelTest, Idle_BothRefuse_EachSeesTheOthersHelloAndWaitsForTheNext) {
  primary.accept = backup.accept = false;
  open_both(key_of(7), key_of(7));
  // The primary's Hello is written at accept, so the backup often reads it in the same turn in
  // which it queues its own: the primary must get that one, not only the next connection's.
  ASSERT_TRUE(run_until([&] { return !primary.ups.empty(); })) << "no hello at the primary";
  EXPECT_EQ(backup.ups.size(), 1u) << "the backup's first Hello was lost";
  EXPECT_EQ(primary.ups[0].boot_id, 222u);
  ASSERT_TRUE(run_until([&] { return primary.ups.size() >= 2 && backup.ups.size() >= 2; }))
      << primary.ups.size() << " and " << backup.ups.size() << " hellos";
  EXPECT_EQ(backup.ups[0].boot_id, 111u);
  EXPECT_TRUE(primary.downs.empty());
  EXPECT_TRUE(backup.downs.empty());
  EXPECT_EQ(primary.channel->rejected(), 0u);
  EXPECT_EQ(backup.channel->rejected(), 0u);
  EXPECT_FALSE(primary.channel->up());
}

// Only the primary refuses: the backup, up for a moment, sees the channel close.
TEST_F(PeerChannelTest, Idle_PrimaryRefuses_BackupSeesItsHelloThenDown) {
  primary.accept = false;
  open_both(key_of(7), key_of(7));
  ASSERT_TRUE(run_until([&] { return !backup.downs.empty(); })) << "no down within 5 s";
  EXPECT_EQ(backup.downs, std::vector<std::string>{"closed by peer"});
  ASSERT_EQ(backup.ups.size(), 1u);
  EXPECT_EQ(backup.ups[0].boot_id, 111u);
  ASSERT_EQ(primary.ups.size(), 1u);
  EXPECT_TRUE(primary.downs.empty());
  EXPECT_FALSE(primary.channel->up());
  EXPECT_FALSE(backup.channel->up());
  // The primary listens on: a backup that comes back is heard (and refused) again.
  backup.channel->reset("test: connect again");
  ASSERT_TRUE(run_until([&] { return primary.ups.size() >= 2; })) << "no second hello";
  EXPECT_TRUE(primary.downs.empty());
}

// Sizes around the channel's own limits: empty, one byte, more than one 64 KiB read, more than
// the 256 KiB at which send() flushes by itself.
std::vector<std::pair<Type, Bytes>> frames(uint8_t salt) {
  std::vector<std::pair<Type, Bytes>> out;
  const Type types[] = {Type::Has, Type::Reply, Type::ReplyEnd, Type::Close, Type::ReplyAck};
  const size_t sizes[] = {0, 1, 100, 70000, 300000, 5, 65536};
  for (size_t i = 0; i < std::size(sizes); ++i) {
    Bytes b(sizes[i]);
    for (size_t j = 0; j < b.size(); ++j) b[j] = static_cast<uint8_t>(salt + i * 31 + j * 7);
    out.emplace_back(types[i % std::size(types)], std::move(b));
  }
  return out;
}

TEST_F(PeerChannelTest, Up_FramesBothWays_ArriveInOrderByteExact) {
  bring_up();
  const auto p2b = frames(1), b2p = frames(2);
  for (const auto& [t, b] : p2b) primary.channel->send(t, b);
  for (const auto& [t, b] : b2p) backup.channel->send(t, b);
  primary.channel->flush();
  backup.channel->flush();
  ASSERT_TRUE(run_until([&] {
    return backup.messages.size() >= p2b.size() && primary.messages.size() >= b2p.size();
  })) << "got "
      << backup.messages.size() << " of " << p2b.size() << " and " << primary.messages.size()
      << " of " << b2p.size();
  EXPECT_TRUE(backup.messages == p2b);
  EXPECT_TRUE(primary.messages == b2p);
  EXPECT_EQ(primary.channel->queued(), 0u);
  EXPECT_EQ(backup.channel->queued(), 0u);
  EXPECT_EQ(primary.channel->rejected(), 0u);
  EXPECT_EQ(backup.channel->rejected(), 0u);
}

// Both Hellos are sealed under a key derived from the pre-shared one: with another key each side
// refuses the other's Hello, counts it, and tries again; the channel never comes up.
TEST_F(PeerChannelTest, Idle_WrongKey_NeverComesUp) {
  open_both(key_of(7), key_of(8));
  ASSERT_TRUE(run_until([&] {
    return primary.channel->rejected() >= 2 && backup.channel->rejected() >= 2;
  })) << "rejected "
      << primary.channel->rejected() << " (primary), " << backup.channel->rejected() << " (backup)";
  EXPECT_FALSE(primary.channel->up());
  EXPECT_FALSE(backup.channel->up());
  EXPECT_TRUE(primary.ups.empty());
  EXPECT_TRUE(backup.ups.empty());
  EXPECT_GE(primary.channel->hellos_refused(), 2u);
  EXPECT_TRUE(primary.downs.empty()) << "down is for a channel that was up";
  EXPECT_TRUE(backup.downs.empty());
}

TEST_F(PeerChannelTest, Up_PrimaryCloses_BackupSeesDown) {
  bring_up();
  primary.channel.reset();
  ASSERT_TRUE(run_until([&] { return !backup.downs.empty(); })) << "no down within 5 s";
  EXPECT_EQ(backup.downs, std::vector<std::string>{"closed by peer"});
  EXPECT_FALSE(backup.channel->up());
}

TEST_F(PeerChannelTest, Up_BackupCloses_PrimarySeesDown) {
  bring_up();
  backup.channel.reset();
  ASSERT_TRUE(run_until([&] { return !primary.downs.empty(); })) << "no down within 5 s";
  EXPECT_EQ(primary.downs, std::vector<std::string>{"closed by peer"});
  EXPECT_FALSE(primary.channel->up());
}

// A stranger on the peer's address (a host on the LAN that took it over) connects to the primary
// and plays back a recording, or nothing. Returns what the primary wrote before it closed, or
// fails the test if it did not close within `limit`.
Bytes stranger_until_closed(Side& primary, uint16_t port, const Bytes& sends,
                            std::chrono::milliseconds limit) {
  sys::Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(kLoopback.v);
  EXPECT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  if (!sends.empty()) {
    EXPECT_EQ(::send(s.get(), sends.data(), sends.size(), 0), ssize_t(sends.size()));
  }
  Bytes got;
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    primary.turn();
    pollfd p{s.get(), POLLIN, 0};
    if (::poll(&p, 1, 0) != 1) continue;
    uint8_t buf[4096];
    ssize_t n = ::read(s.get(), buf, sizeof buf);
    if (n <= 0) return got;  // closed (or reset)
    got.insert(got.end(), buf, buf + n);
  }
  ADD_FAILURE() << "the primary did not close the stranger's connection";
  return got;
}

// The primary answers a recorded Hello with its own Hello and a Confirm, but the recording cannot
// confirm (it would need the session key, derived from the primary's fresh nonce): no `up`, and
// the connection is closed at the handshake timeout, so the real backup comes up after it.
TEST_F(PeerChannelTest, HelloSent_RecordedHelloPlayedBack_NeverUpClosedThenThePeerComesUp) {
  primary.open(Role::Primary, Mode::Duplex, 111, port, key_of(7));
  crypto::FrameAuth hello_auth(crypto::derive_key(key_of(7), "understudy hello v2"));
  Bytes payload, recording;
  encode(payload, Hello{Role::Backup, Mode::Starting, 222, {}, {}});
  hello_auth.seal(recording, static_cast<uint8_t>(Type::Hello), 0, payload);
  auto before = std::chrono::steady_clock::now();
  Bytes answer = stranger_until_closed(primary, port, recording, 5s);
  EXPECT_GE(std::chrono::steady_clock::now() - before, 2s) << "closed before the timeout";
  auto hello_size = crypto::FrameAuth::frame_size(answer);
  ASSERT_TRUE(hello_size.has_value());
  ASSERT_GT(answer.size(), *hello_size) << "the primary sent no Confirm after its Hello";
  EXPECT_TRUE(primary.ups.empty());
  EXPECT_FALSE(primary.channel->up());
  EXPECT_EQ(primary.channel->rejected(), 1u);
  backup.open(Role::Backup, Mode::Starting, 222, port, key_of(7));
  ASSERT_TRUE(run_until([&] { return primary.channel->up() && backup.channel->up(); }));
  EXPECT_EQ(primary.ups.size(), 1u);
}

// A stranger that connects and says nothing cannot hold the primary's one channel.
TEST_F(PeerChannelTest, Connecting_SilentStranger_ClosedAtTheHandshakeTimeout) {
  primary.open(Role::Primary, Mode::Duplex, 111, port, key_of(7));
  stranger_until_closed(primary, port, {}, 5s);
  EXPECT_EQ(primary.channel->rejected(), 1u);
  backup.open(Role::Backup, Mode::Starting, 222, port, key_of(7));
  ASSERT_TRUE(run_until([&] { return primary.channel->up() && backup.channel->up(); }));
}

// Our own Hello, reflected back (same role is refused earlier): the boot id gives it away.
TEST_F(PeerChannelTest, HelloSent_OurOwnBootId_Refused) {
  primary.open(Role::Primary, Mode::Duplex, 111, port, key_of(7));
  backup.open(Role::Backup, Mode::Starting, 111, port, key_of(7));
  ASSERT_TRUE(run_until([&] { return primary.channel->rejected() >= 1; }));
  EXPECT_TRUE(primary.ups.empty());
}

}  // namespace
}  // namespace us::peer
