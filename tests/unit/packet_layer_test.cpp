// State-machine tests of the packet layer (src/packet/packet_layer.hpp), named <state>_<event>.
// Read the fixture first: it starts a PacketLayer in a role and mode, drives the handshake, and
// records every emitted packet per output. Every emitted packet is parsed and checked field by
// field, and both its IP header checksum and its TCP checksum must verify.
//
// Sequence spaces (flow.hpp): C(n) = client seq, S(n) = client-facing server seq (the keyed ISN),
// K(n) = the local kernel's server seq. The default ISNs put C and K a few hundred bytes before
// 2^32, so most data tests cross the wrap in both directions without saying so.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "packet/packet_layer.hpp"
#include "wire/tcp.hpp"
#include "wire/tcp_options.hpp"

namespace us::packet {
namespace {

using namespace std::chrono_literals;
using wire::Endpoint;
using wire::Ipv4Addr;
using wire::SeqNum;
namespace tf = wire::tcp_flags;

const Endpoint kAdvertised{Ipv4Addr(198, 18, 0, 100), 80};
const Endpoint kListen{Ipv4Addr(198, 19, 0, 1), 80};
const Ipv4Addr kFakeFirst(198, 19, 1, 0);
const Endpoint kClient{Ipv4Addr(198, 18, 0, 2), 40000};
const Endpoint kFake{kFakeFirst, 40000};  // the first made-up address, client's port

// ---------------------------------------------------------------------------------------------
// Recording emitter.

struct Recorder : Emitter {
  std::vector<std::vector<uint8_t>> kernel, client, primary, front;
  std::vector<std::pair<ConnKey, SeqNum>> has;
  std::vector<HasReport> reports;

  void to_kernel(std::span<const uint8_t> p) override { kernel.emplace_back(p.begin(), p.end()); }
  void to_client(std::span<const uint8_t> p) override { client.emplace_back(p.begin(), p.end()); }
  void to_primary(std::span<const uint8_t> p) override { primary.emplace_back(p.begin(), p.end()); }
  void backup_has(const ConnKey& key, const HasReport& r) override {
    has.emplace_back(key, r.has);
    reports.push_back(r);
  }
  void to_front(std::span<const uint8_t> p) override { front.emplace_back(p.begin(), p.end()); }

  void clear() {
    kernel.clear();
    client.clear();
    primary.clear();
    front.clear();
    has.clear();
    reports.clear();
  }
  size_t total() const {
    return kernel.size() + client.size() + primary.size() + front.size() + has.size();
  }
};

// ---------------------------------------------------------------------------------------------
// Fluent builder for client and kernel packets (valid checksums, DF, TTL 64, ident 0).

class PacketBuilder {
 public:
  PacketBuilder& from(Endpoint e) {
    spec_.src = e;
    return *this;
  }
  PacketBuilder& to(Endpoint e) {
    spec_.dst = e;
    return *this;
  }
  PacketBuilder& seq(uint32_t s) {
    spec_.seq = SeqNum(s);
    return *this;
  }
  PacketBuilder& ack(uint32_t a) {
    spec_.ack = SeqNum(a);
    spec_.flags |= tf::ACK;
    return *this;
  }
  PacketBuilder& flags(uint8_t f) {
    spec_.flags |= f;
    return *this;
  }
  PacketBuilder& window(uint16_t w) {
    spec_.window = w;
    return *this;
  }
  PacketBuilder& options(const wire::TcpOptions& o) {
    options_ = wire::encode_options(o);
    return *this;
  }
  PacketBuilder& payload(std::vector<uint8_t> bytes) {
    payload_ = std::move(bytes);
    if (!payload_.empty()) spec_.flags |= tf::PSH;
    return *this;
  }
  // n bytes of a recognisable pattern, starting at `first`.
  PacketBuilder& data(size_t n, uint8_t first = 'a') {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i % 26);
    return payload(std::move(b));
  }
  std::vector<uint8_t> build() const {
    wire::TcpSegmentSpec s = spec_;
    s.options = options_;
    s.payload = payload_;
    return wire::build_tcp_packet(s);
  }

 private:
  wire::TcpSegmentSpec spec_;
  std::vector<uint8_t> options_;
  std::vector<uint8_t> payload_;
};

// Linux SYN options: MSS 1460, SACK-permitted, TS, NOP + wscale 7 (TS at option offset 6).
wire::TcpOptions client_syn_options(bool wscale = true) {
  wire::TcpOptions o;
  o.mss = 1460;
  o.sack_permitted = true;
  o.timestamp = std::pair{0x11223344u, 0u};
  if (wscale) o.wscale = 7;
  return o;
}

// What a kernel answers once TS is gone: MSS, SACK-permitted, wscale 7 when the client offered it.
wire::TcpOptions kernel_syn_ack_options(bool wscale = true) {
  wire::TcpOptions o;
  o.mss = 1460;
  o.sack_permitted = true;
  if (wscale) o.wscale = 7;
  return o;
}

// ---------------------------------------------------------------------------------------------
// An emitted packet, decoded. Parsing verifies the IP header checksum; the TCP one is checked here.

struct Seg {
  bool parsed = false;
  bool tcp_checksum_ok = false;
  Endpoint src, dst;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;
  uint16_t window = 0;
  size_t total_len = 0;
  std::vector<uint8_t> options, payload;
  wire::TcpOptions opts;
};

Seg decode(const std::vector<uint8_t>& packet) {
  std::vector<uint8_t> copy = packet;
  Seg s;
  auto r = wire::parse_tcp_packet(copy, /*verify_tcp_checksum=*/false);
  if (!r) {
    ADD_FAILURE() << "emitted packet does not parse: " << wire::to_string(r.error());
    return s;
  }
  s.parsed = true;
  s.tcp_checksum_ok = r->tcp.checksum_ok(r->ip.src(), r->ip.dst());
  s.src = r->src();
  s.dst = r->dst();
  s.seq = r->tcp.seq().raw();
  s.ack = r->tcp.ack().raw();
  s.flags = r->tcp.flags();
  s.window = r->tcp.window();
  s.total_len = r->ip.total_len();
  s.options.assign(r->tcp.options().begin(), r->tcp.options().end());
  s.payload.assign(r->tcp.payload().begin(), r->tcp.payload().end());
  auto o = wire::parse_options(s.options);
  if (o) s.opts = *o;
  return s;
}

// Parses and asserts both checksums; the IP one is part of parsing.
#define EXPECT_VALID(seg)               \
  do {                                  \
    EXPECT_TRUE((seg).parsed);          \
    EXPECT_TRUE((seg).tcp_checksum_ok); \
  } while (0)

std::vector<uint8_t> payload_of(const std::vector<uint8_t>& packet) {
  return decode(packet).payload;
}

// ---------------------------------------------------------------------------------------------
// Fixture: a PacketLayer in a chosen role and mode, with helpers that drive it.

class PacketLayerTest : public ::testing::Test {
 protected:
  uint32_t client_isn = 0xFFFFFF80u;  // client data crosses 2^32 after 127 bytes
  uint32_t server_isn = 1000000u;     // Settings::server_isn returns this for any key
  uint32_t kernel_isn = 0xFFFFFF00u;  // kernel data crosses 2^32 after 255 bytes
  bool wscale = true;

  Recorder out;
  std::unique_ptr<PacketLayer> pl;
  Role role = Role::Backup;
  Mode mode = Mode::Starting;  // the node's mode machine owns it; tests set it as it would
  TimePoint t0 = TimePoint{} + 1000h;
  TimePoint now = t0;

  uint32_t C(uint32_t n) const { return client_isn + n; }
  uint32_t S(uint32_t n) const { return server_isn + n; }
  uint32_t K(uint32_t n) const { return kernel_isn + n; }
  ConnKey key() const { return ConnKey{kClient.ip, kClient.port, client_isn}; }

  void start(Role r, Mode m) {
    role = r;
    Settings s;
    s.role = r;
    s.advertised = kAdvertised;
    s.listen = kListen;
    s.fake_first = kFakeFirst;
    uint32_t isn = server_isn;
    s.server_isn = [isn](const ConnKey&) { return isn; };
    mode = m;
    s.mode = [this] { return mode; };
    pl = std::make_unique<PacketLayer>(std::move(s), out);
  }

  // Where a client packet arrives on this node: relayed to the primary in duplex, else the LAN.
  Source default_source() const {
    return role == Role::Primary && pl->mode() == Mode::Duplex ? Source::Relay : Source::Lan;
  }

  PacketBuilder from_client() const {
    return PacketBuilder().from(kClient).to(kAdvertised).window(1000);
  }
  PacketBuilder from_kernel(Endpoint fake = kFake) const {
    return PacketBuilder().from(kListen).to(fake).window(400);
  }

  void client(const std::vector<uint8_t>& pkt) { client(pkt, default_source()); }
  void client(const std::vector<uint8_t>& pkt, Source src) {
    std::vector<uint8_t> copy = pkt;  // the layer rewrites in place
    pl->on_client_packet(copy, src, now);
  }
  void kernel(const std::vector<uint8_t>& pkt) {
    std::vector<uint8_t> copy = pkt;
    pl->on_kernel_packet(copy, now);
  }

  std::vector<uint8_t> client_syn() const {
    return from_client()
        .seq(C(0))
        .flags(tf::SYN)
        .window(64240)
        .options(client_syn_options(wscale))
        .build();
  }
  std::vector<uint8_t> kernel_syn_ack(Endpoint fake = kFake) const {
    return from_kernel(fake)
        .seq(K(0))
        .ack(C(1))
        .flags(tf::SYN)
        .window(65160)
        .options(kernel_syn_ack_options(wscale))
        .build();
  }

  // SYN, SYN-ACK (released on the primary in duplex), final ACK; then an empty recorder.
  void establish() {
    client(client_syn());
    kernel(kernel_syn_ack());
    if (role == Role::Primary && pl->mode() == Mode::Duplex)
      pl->on_backup_has(key(), SeqNum(C(1)), now);
    client(from_client().seq(C(1)).ack(S(1)).build());
    pl->flush();
    out.clear();
  }

  const Flow& flow() const {
    const Flow* f = pl->find_by_key(key());
    EXPECT_NE(f, nullptr);
    return *f;
  }
};

// ---------------------------------------------------------------------------------------------
// Handshake translation.

TEST_F(PacketLayerTest, BackupDuplexNoFlow_ClientSyn) {
  start(Role::Backup, Mode::Duplex);
  auto syn = client_syn();
  client(syn, Source::Lan);

  ASSERT_EQ(out.primary.size(), 1u);
  EXPECT_EQ(out.primary[0], syn) << "relayed to the primary unchanged";
  ASSERT_EQ(out.kernel.size(), 1u);
  EXPECT_TRUE(out.client.empty());

  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.src, kFake);
  EXPECT_EQ(k.dst, kListen);
  EXPECT_EQ(k.seq, C(0));
  EXPECT_EQ(k.flags, tf::SYN);
  EXPECT_EQ(k.window, 64240);
  EXPECT_EQ(k.total_len, syn.size()) << "the header length never changes";
  EXPECT_EQ(k.opts.mss, 1460);
  EXPECT_TRUE(k.opts.sack_permitted);
  EXPECT_EQ(k.opts.wscale, 7);
  EXPECT_FALSE(k.opts.timestamp.has_value());
  // MSS(4) SACK-perm(2) then the 10 TS bytes, now NOPs, then NOP wscale.
  ASSERT_EQ(k.options.size(), 20u);
  EXPECT_EQ(std::vector<uint8_t>(k.options.begin() + 6, k.options.begin() + 16),
            std::vector<uint8_t>(10, wire::tcp_opt::NOP));

  const Flow* f = pl->find_by_key(key());
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(f->fake, kFake);
  EXPECT_EQ(pl->find_by_fake(kFake), f);
  EXPECT_EQ(pl->counters().flows_opened, 1u);
  EXPECT_EQ(pl->counters().relayed, 1u);
  EXPECT_EQ(pl->counters().to_kernel, 1u);
}

TEST_F(PacketLayerTest, PrimarySimplexSynReceived_KernelSynAck) {
  start(Role::Primary, Mode::Simplex);
  client(client_syn());
  out.clear();
  kernel(kernel_syn_ack());

  EXPECT_TRUE(out.kernel.empty()) << "no fake ACK before the client acknowledged anything";
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.src, kAdvertised);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.seq, S(0)) << "the keyed ISN, not the kernel's";
  EXPECT_EQ(c.ack, C(1));
  EXPECT_EQ(c.flags, tf::SYN | tf::ACK);
  EXPECT_EQ(c.window, 65160);
  EXPECT_EQ(c.opts.mss, 1460);
  EXPECT_EQ(c.opts.wscale, 7);
  EXPECT_TRUE(c.opts.sack_permitted);
  EXPECT_EQ(flow().window_shift, 7);
}

TEST_F(PacketLayerTest, BackupDuplexSynReceived_KernelSynAck) {
  start(Role::Backup, Mode::Duplex);
  client(client_syn());
  out.clear();
  kernel(kernel_syn_ack());
  EXPECT_EQ(out.total(), 0u) << "the backup's SYN-ACK never reaches the client";

  pl->flush();
  ASSERT_EQ(out.has.size(), 1u);
  EXPECT_EQ(out.has[0].first, key());
  EXPECT_EQ(out.has[0].second, SeqNum(C(1)));
  pl->flush();
  EXPECT_EQ(out.has.size(), 1u) << "nothing new, no notice";
}

// ---------------------------------------------------------------------------------------------
// Backup in duplex.

TEST_F(PacketLayerTest, BackupDuplexEstablished_ClientData) {
  start(Role::Backup, Mode::Duplex);
  establish();
  auto data = from_client().seq(C(1)).ack(S(1)).data(200).build();  // crosses the client wrap
  client(data, Source::Lan);

  ASSERT_EQ(out.primary.size(), 1u);
  EXPECT_EQ(out.primary[0], data);
  ASSERT_EQ(out.kernel.size(), 1u);
  EXPECT_TRUE(out.client.empty());
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.src, kFake);
  EXPECT_EQ(k.dst, kListen);
  EXPECT_EQ(k.seq, C(1));
  EXPECT_EQ(k.ack, K(1));
  EXPECT_EQ(k.window, 1000);
  EXPECT_EQ(k.payload, payload_of(data));
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_KernelData) {
  start(Role::Backup, Mode::Duplex);
  establish();
  auto seg = from_kernel().seq(K(1)).ack(C(1)).data(300).build();  // crosses the kernel wrap
  kernel(seg);

  EXPECT_EQ(out.total(), 0u) << "kept, not sent, and no fake ACK (the client acked nothing new)";
  const Flow& f = flow();
  ASSERT_EQ(f.retained.size(), 1u);
  EXPECT_EQ(f.retained[0].seq, SeqNum(S(1)));
  EXPECT_EQ(f.retained[0].end, SeqNum(S(301)));
  Seg r = decode(f.retained[0].packet);
  EXPECT_VALID(r);
  EXPECT_EQ(r.src, kAdvertised);
  EXPECT_EQ(r.dst, kClient);
  EXPECT_EQ(r.seq, S(1));
  EXPECT_EQ(r.payload, payload_of(seg));
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_KernelAcksClientData) {
  start(Role::Backup, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(200).build());
  kernel(from_kernel().seq(K(1)).ack(C(201)).build());
  EXPECT_TRUE(out.client.empty()) << "the backup's ACK is dropped";
  EXPECT_TRUE(out.has.empty()) << "coalesced until flush()";

  pl->flush();
  ASSERT_EQ(out.has.size(), 1u);
  EXPECT_EQ(out.has[0].first, key());
  EXPECT_EQ(out.has[0].second, SeqNum(C(201)));
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_NoteLocalHas) {
  start(Role::Backup, Mode::Duplex);
  establish();
  pl->note_local_has(kFake, SeqNum(C(500)));
  pl->flush();
  ASSERT_EQ(out.has.size(), 1u);
  EXPECT_EQ(out.has[0].second, SeqNum(C(500)));

  pl->note_local_has(kFake, SeqNum(C(400)));                                  // older: ignored
  pl->note_local_has(Endpoint{Ipv4Addr(198, 19, 1, 99), 1}, SeqNum(C(900)));  // unknown fake
  pl->flush();
  EXPECT_EQ(out.has.size(), 1u);
}

TEST_F(PacketLayerTest, BackupDuplex_RelayedPacketRefused) {
  start(Role::Backup, Mode::Duplex);
  client(client_syn(), Source::Relay);
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(pl->counters().dropped_not_front, 1u);
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_KernelRst) {
  start(Role::Backup, Mode::Duplex);
  establish();
  kernel(from_kernel().seq(K(1)).ack(C(1)).flags(tf::RST).build());
  EXPECT_TRUE(out.client.empty()) << "a RST made by one kernel alone never reaches the client";
  EXPECT_FALSE(flow().reset) << "nor ends the flow: the primary may still serve it";
}

// ---------------------------------------------------------------------------------------------
// Primary in duplex: ACK gating (I1).

TEST_F(PacketLayerTest, PrimaryDuplexSynReceived_KernelSynAckHeldUntilBackupHas) {
  start(Role::Primary, Mode::Duplex);
  client(client_syn(), Source::Relay);
  out.clear();
  kernel(kernel_syn_ack());
  EXPECT_TRUE(out.client.empty());
  EXPECT_EQ(pl->counters().syn_acks_held, 1u);

  pl->on_backup_has(key(), SeqNum(C(0)), now);  // the backup has not got the SYN yet
  EXPECT_TRUE(out.client.empty());

  pl->on_backup_has(key(), SeqNum(C(1)), now);
  ASSERT_EQ(out.client.size(), 1u) << "the SYN-ACK alone, no extra ACK";
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.src, kAdvertised);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.flags, tf::SYN | tf::ACK);
  EXPECT_EQ(c.seq, S(0));
  EXPECT_EQ(c.ack, C(1));
}

TEST_F(PacketLayerTest, PrimaryDuplexNoFlow_EarlyBackupHas) {
  start(Role::Primary, Mode::Duplex);
  pl->on_backup_has(key(), SeqNum(C(1)), now);  // overtook the relayed SYN on the other channel
  client(client_syn(), Source::Relay);
  kernel(kernel_syn_ack());

  ASSERT_EQ(out.client.size(), 1u) << "not held: the backup already has the SYN";
  EXPECT_EQ(pl->counters().syn_acks_held, 0u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.flags, tf::SYN | tf::ACK);
  EXPECT_EQ(c.seq, S(0));
}

TEST_F(PacketLayerTest, PrimaryDuplexEstablished_KernelAckBeyondBackupHas) {
  start(Role::Primary, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  ASSERT_EQ(out.kernel.size(), 1u) << "relayed packets are accepted";
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());

  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.src, kAdvertised);
  EXPECT_EQ(c.dst, kClient);
  EXPECT_EQ(c.seq, S(1));
  EXPECT_EQ(c.ack, C(1)) << "clamped to what the backup has";
  EXPECT_EQ(c.flags, tf::ACK);
  EXPECT_EQ(c.window, 400 + (1024 >> 7));
  // The right edge stays where the kernel put it (to within one scale unit).
  EXPECT_EQ(SeqNum(c.ack) + (uint32_t{c.window} << 7), SeqNum(C(1025)) + (400u << 7));
  EXPECT_EQ(pl->counters().acks_clamped, 1u);
}

TEST_F(PacketLayerTest, PrimaryDuplexEstablishedNoWscale_KernelAckBeyondBackupHas) {
  wscale = false;
  start(Role::Primary, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());

  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.ack, C(1));
  EXPECT_EQ(c.window, 400 + 1024);
}

TEST_F(PacketLayerTest, PrimaryDuplexAckClamped_BackupHasAdvances) {
  start(Role::Primary, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());
  out.clear();

  pl->on_backup_has(key(), SeqNum(C(601)), now);  // past the client's wrap
  ASSERT_EQ(out.client.size(), 1u);
  Seg a = decode(out.client[0]);
  EXPECT_VALID(a);
  EXPECT_EQ(a.src, kAdvertised);
  EXPECT_EQ(a.dst, kClient);
  EXPECT_EQ(a.seq, S(1));
  EXPECT_EQ(a.ack, C(601));
  EXPECT_EQ(a.flags, tf::ACK);
  EXPECT_TRUE(a.payload.empty());
  EXPECT_EQ(a.window, 400 + (424 >> 7));

  pl->on_backup_has(key(), SeqNum(C(1025)), now);
  ASSERT_EQ(out.client.size(), 2u);
  Seg b = decode(out.client[1]);
  EXPECT_VALID(b);
  EXPECT_EQ(b.ack, C(1025));
  EXPECT_EQ(b.window, 400);

  pl->on_backup_has(key(), SeqNum(C(1025)), now);  // repeated
  pl->on_backup_has(key(), SeqNum(C(2000)), now);  // beyond the kernel: nothing to acknowledge yet
  EXPECT_EQ(out.client.size(), 2u);
  EXPECT_EQ(pl->counters().acks_fabricated, 2u);
}

TEST_F(PacketLayerTest, PrimaryDuplexBackupAhead_KernelAckPassesUnclamped) {
  start(Role::Primary, Mode::Duplex);
  establish();
  pl->on_backup_has(key(), SeqNum(C(2000)), now);
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.ack, C(1025));
  EXPECT_EQ(c.window, 400);
  EXPECT_EQ(pl->counters().acks_clamped, 0u);
}

// Chaos seed 2035319265: the primary's window let the client send beyond what the backup's kernel
// could take; the backup dropped those segments while the primary's kernel SACKed them, and after
// the primary died the client did not resend them for seconds. The window's right edge is the
// nearer of both kernels'.
TEST_F(PacketLayerTest, PrimaryDuplex_WindowEndsAtTheBackupsRightEdge) {
  start(Role::Primary, Mode::Duplex);
  establish();
  HasReport r;
  r.has = SeqNum(C(1025));
  r.right = SeqNum(C(1025)) + (100u << 7);
  pl->on_backup_has(key(), r, now);
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.ack, C(1025));
  EXPECT_EQ(c.window, 100);

  // The backup's kernel opens its window: the client hears of it without waiting for data.
  out.clear();
  r.right = SeqNum(C(1025)) + (300u << 7);
  pl->on_backup_has(key(), r, now);
  ASSERT_EQ(out.client.size(), 0u);  // a 100-unit window was not nearly closed: no extra ACK
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(decode(out.client[0]).window, 300);
}

TEST_F(PacketLayerTest, PrimaryDuplex_ClosedWindowReopenedByTheBackupIsAnnounced) {
  start(Role::Primary, Mode::Duplex);
  establish();
  HasReport r;
  r.has = SeqNum(C(1025));
  r.right = SeqNum(C(1025));  // the backup's kernel is full
  pl->on_backup_has(key(), r, now);
  client(from_client().seq(C(1)).ack(S(1)).data(1024).build());
  kernel(from_kernel().seq(K(1)).ack(C(1025)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(decode(out.client[0]).window, 0);
  out.clear();
  r.right = SeqNum(C(1025)) + (50u << 7);
  pl->on_backup_has(key(), r, now);
  ASSERT_EQ(out.client.size(), 1u);
  Seg u = decode(out.client[0]);
  EXPECT_VALID(u);
  EXPECT_EQ(u.ack, C(1025));
  EXPECT_EQ(u.window, 50);
}

// SACK blocks pass while the ACK is lowered: they are advisory (RFC 2018), the client keeps what
// it was told was SACKed until it is acknowledged, and trimming them cost it its fast recovery
// (chaos seeds 602774817, 1487305356).
TEST_F(PacketLayerTest, PrimaryDuplex_SackBlocksPassWhileTheAckIsLowered) {
  start(Role::Primary, Mode::Duplex);
  establish();
  pl->on_backup_has(key(), SeqNum(C(1001)), now);
  wire::TcpOptions o;
  o.sack[0] = {SeqNum(C(2501)), SeqNum(C(3501))};
  o.sack_count = 1;
  auto seg = from_kernel().seq(K(1)).ack(C(1501)).window(400).options(o).build();
  kernel(seg);
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.ack, C(1001));
  ASSERT_EQ(c.opts.sack_count, 1);
  EXPECT_EQ(c.opts.sack[0], o.sack[0]);
}

TEST_F(PacketLayerTest, BackupDuplex_ReportsItsWindowsRightEdge) {
  start(Role::Backup, Mode::Duplex);
  establish();
  out.reports.clear();
  kernel(from_kernel().seq(K(1)).ack(C(1001)).window(1000).build());
  pl->flush();
  ASSERT_EQ(out.reports.size(), 1u);
  const HasReport& r = out.reports[0];
  EXPECT_EQ(r.has, SeqNum(C(1001)));
  ASSERT_TRUE(r.right.has_value());
  EXPECT_EQ(*r.right, SeqNum(C(1001)) + (1000u << 7));

  // The application read: the window opens without new data.
  kernel(from_kernel().seq(K(1)).ack(C(1001)).window(1200).build());
  pl->flush();
  ASSERT_EQ(out.reports.size(), 2u);
  EXPECT_EQ(out.reports[1].has, SeqNum(C(1001)));
  EXPECT_EQ(*out.reports[1].right, SeqNum(C(1001)) + (1200u << 7));
  // Nothing new: nothing sent.
  kernel(from_kernel().seq(K(1)).ack(C(1001)).window(1200).build());
  pl->flush();
  EXPECT_EQ(out.reports.size(), 2u);
}

// A client with a stale ARP entry sends to the primary: the packet goes, unchanged, to the front
// (the backup), which relays it back; the primary never acts on it directly (I1).
TEST_F(PacketLayerTest, PrimaryDuplex_LanPacketSentToFront) {
  start(Role::Primary, Mode::Duplex);
  auto syn = client_syn();
  client(syn, Source::Lan);
  ASSERT_EQ(out.front.size(), 1u);
  EXPECT_EQ(out.front[0], syn);
  EXPECT_EQ(out.total(), 1u);
  EXPECT_EQ(pl->counters().sent_to_front, 1u);
  EXPECT_EQ(pl->find_by_key(key()), nullptr);
}

TEST_F(PacketLayerTest, BackupStarting_LanPacketDropped) {
  start(Role::Backup, Mode::Starting);
  client(client_syn(), Source::Lan);
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(pl->counters().dropped_not_front, 1u);
}

TEST_F(PacketLayerTest, PrimaryDuplexEstablished_RelayedData) {
  start(Role::Primary, Mode::Duplex);
  establish();
  auto data = from_client().seq(C(1)).ack(S(1)).data(50).build();
  client(data, Source::Relay);
  ASSERT_EQ(out.kernel.size(), 1u);
  EXPECT_TRUE(out.primary.empty());
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.src, kFake);
  EXPECT_EQ(k.dst, kListen);
  EXPECT_EQ(k.ack, K(1));
  EXPECT_EQ(k.payload, payload_of(data));
}

// ---------------------------------------------------------------------------------------------
// Fake ACKs: the node's kernel lags the client.

TEST_F(PacketLayerTest, BackupDuplexEstablished_ClientAckBeyondKernelSndNxt) {
  start(Role::Backup, Mode::Duplex);
  establish();
  client(
      from_client().seq(C(1)).ack(S(501)).data(10).build());  // the primary's bytes, not ours yet
  ASSERT_EQ(out.kernel.size(), 1u);
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.ack, K(1)) << "clamped to the kernel's snd_nxt, else Linux drops the segment";
  EXPECT_EQ(k.payload.size(), 10u);
  EXPECT_EQ(pl->counters().kernel_acks_clamped, 1u);
}

TEST_F(PacketLayerTest, BackupDuplexLagging_KernelSendsAckedData) {
  start(Role::Backup, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(501)).window(777).build());
  out.clear();

  kernel(from_kernel().seq(K(1)).ack(C(1)).data(300).build());
  ASSERT_EQ(out.kernel.size(), 1u);
  EXPECT_TRUE(out.client.empty());
  Seg f = decode(out.kernel[0]);
  EXPECT_VALID(f);
  EXPECT_EQ(f.src, kFake);
  EXPECT_EQ(f.dst, kListen);
  EXPECT_EQ(f.seq, C(1)) << "the kernel's rcv_nxt";
  EXPECT_EQ(f.ack, K(301));
  EXPECT_EQ(f.flags, tf::ACK);
  EXPECT_EQ(f.window, 777) << "the client's window field";
  EXPECT_TRUE(f.payload.empty());
  EXPECT_TRUE(flow().retained.empty()) << "the client already has these bytes";

  kernel(from_kernel().seq(K(301)).ack(C(1)).data(300).build());  // partly acknowledged
  ASSERT_EQ(out.kernel.size(), 2u);
  Seg g = decode(out.kernel[1]);
  EXPECT_VALID(g);
  EXPECT_EQ(g.ack, K(501)) << "only as far as the client acknowledged";
  EXPECT_EQ(flow().retained.size(), 1u);

  kernel(from_kernel().seq(K(601)).ack(C(1)).data(100).build());
  EXPECT_EQ(out.kernel.size(), 2u) << "the client has not acknowledged these";
  EXPECT_EQ(pl->counters().fake_acks, 2u);
}

// ---------------------------------------------------------------------------------------------
// SACK translation.

TEST_F(PacketLayerTest, BackupDuplexEstablished_ClientAckWithSack) {
  start(Role::Backup, Mode::Duplex);
  establish();
  for (uint32_t off = 1; off < 3001; off += 1000)
    kernel(from_kernel().seq(K(off)).ack(C(1)).data(1000).build());
  out.clear();

  wire::TcpOptions sack;
  sack.sack[0] = {SeqNum(S(2001)), SeqNum(S(2501))};
  sack.sack[1] = {SeqNum(S(2601)), SeqNum(S(3001))};
  sack.sack_count = 2;
  client(from_client().seq(C(1)).ack(S(1001)).options(sack).build());

  ASSERT_EQ(out.kernel.size(), 1u);
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.ack, K(1001));  // past the kernel's wrap
  ASSERT_EQ(k.opts.sack_count, 2);
  EXPECT_EQ(k.opts.sack[0].left, SeqNum(K(2001)));
  EXPECT_EQ(k.opts.sack[0].right, SeqNum(K(2501)));
  EXPECT_EQ(k.opts.sack[1].left, SeqNum(K(2601)));
  EXPECT_EQ(k.opts.sack[1].right, SeqNum(K(3001)));
}

// ---------------------------------------------------------------------------------------------
// Takeover (backup) and peer loss (primary).

// Chaos seed 1344475903: the only reply segment sent at the takeover was lost, and the kernel's
// backed-off timer would have resent it after the client had given up. The packet layer resends
// the oldest unacknowledged segment at 0.2, 0.6, 1.4 and 3 s, until the client acknowledges it.
TEST_F(PacketLayerTest, BackupTakeOver_ResendsTheOldestUnacknowledgedSegment) {
  start(Role::Backup, Mode::Duplex);
  establish();
  kernel(from_kernel().seq(K(1)).ack(C(1)).data(100, 'a').build());
  kernel(from_kernel().seq(K(101)).ack(C(1)).data(100, 'b').build());
  mode = Mode::Simplex;
  pl->take_over(now);
  out.clear();
  auto first = PacketBuilder()
                   .from(kAdvertised)
                   .to(kClient)
                   .seq(S(1))
                   .ack(C(1))
                   .window(400)
                   .data(100, 'a')
                   .build();
  pl->resend_due(now + 199ms);
  EXPECT_TRUE(out.client.empty());
  pl->resend_due(now + 200ms);
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(out.client[0], first);
  pl->resend_due(now + 599ms);
  EXPECT_EQ(out.client.size(), 1u);
  pl->resend_due(now + 600ms);
  ASSERT_EQ(out.client.size(), 2u);
  EXPECT_EQ(out.client[1], first);
  // The client acknowledges the first segment: the next resend is of the second.
  client(from_client().seq(C(1)).ack(S(101)).build(), Source::Lan);
  out.clear();
  pl->resend_due(now + 1400ms);
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(decode(out.client[0]).seq, S(101));
  EXPECT_EQ(payload_of(out.client[0]), payload_of(PacketBuilder().data(100, 'b').build()));
  // All acknowledged: nothing more.
  client(from_client().seq(C(1)).ack(S(201)).build(), Source::Lan);
  out.clear();
  pl->resend_due(now + 3000ms);
  EXPECT_TRUE(out.client.empty());
  EXPECT_EQ(pl->counters().takeover_resends, 3u);
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_TakeOver) {
  start(Role::Backup, Mode::Duplex);
  establish();
  kernel(from_kernel().seq(K(1)).ack(C(1)).data(100, 'a').build());    // A
  kernel(from_kernel().seq(K(101)).ack(C(1)).data(100, 'b').build());  // B, crosses the wrap
  kernel(from_kernel().seq(K(201)).ack(C(1)).data(100, 'c').build());  // C
  client(from_client().seq(C(1)).ack(S(101)).data(50).build());        // acks A; 50 client bytes
  kernel(from_kernel().seq(K(301)).ack(C(51)).window(333).build());    // our kernel has them
  out.clear();

  mode = Mode::Simplex;
  pl->take_over(now);
  EXPECT_EQ(pl->mode(), Mode::Simplex);
  ASSERT_EQ(out.client.size(), 3u);
  // Byte for byte the kernel's segments as the client must see them.
  EXPECT_EQ(out.client[0], PacketBuilder()
                               .from(kAdvertised)
                               .to(kClient)
                               .seq(S(101))
                               .ack(C(1))
                               .window(400)
                               .data(100, 'b')
                               .build());
  EXPECT_EQ(out.client[1], PacketBuilder()
                               .from(kAdvertised)
                               .to(kClient)
                               .seq(S(201))
                               .ack(C(1))
                               .window(400)
                               .data(100, 'c')
                               .build());
  Seg a = decode(out.client[2]);
  EXPECT_VALID(a);
  EXPECT_EQ(a.src, kAdvertised);
  EXPECT_EQ(a.dst, kClient);
  EXPECT_EQ(a.flags, tf::ACK);
  EXPECT_EQ(a.seq, S(301));
  EXPECT_EQ(a.ack, C(51)) << "what the primary never acknowledged";
  EXPECT_EQ(a.window, 333);
  EXPECT_EQ(pl->counters().retained_sent, 2u);

  // Simplex now: the LAN is served directly, nothing relayed, kernel segments go out.
  out.clear();
  client(from_client().seq(C(51)).ack(S(301)).data(10).build(), Source::Lan);
  EXPECT_TRUE(out.primary.empty());
  EXPECT_EQ(out.kernel.size(), 1u);
  kernel(from_kernel().seq(K(301)).ack(C(61)).data(20).build());
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(decode(out.client[0]).seq, S(301));
}

TEST_F(PacketLayerTest, PrimaryDuplexSynAckHeld_PeerLost) {
  start(Role::Primary, Mode::Duplex);
  client(client_syn(), Source::Relay);
  kernel(kernel_syn_ack());
  out.clear();

  mode = Mode::Simplex;
  pl->peer_lost(now);
  EXPECT_EQ(pl->mode(), Mode::Simplex);
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.flags, tf::SYN | tf::ACK);
  EXPECT_EQ(c.seq, S(0));
  EXPECT_EQ(c.ack, C(1));

  out.clear();
  client(from_client().seq(C(1)).ack(S(1)).build(), Source::Lan);
  EXPECT_EQ(out.kernel.size(), 1u) << "the primary is the front now";
}

TEST_F(PacketLayerTest, PrimaryDuplexAckClamped_PeerLost) {
  start(Role::Primary, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(300).build());
  kernel(from_kernel().seq(K(1)).ack(C(301)).window(400).build());  // clamped to C(1)
  out.clear();

  mode = Mode::Simplex;
  pl->peer_lost(now);
  // The released ACK, a probe below the client's RCV.NXT (it answers at once), then four
  // duplicate ACKs (fast retransmit of anything the dead backup swallowed).
  ASSERT_EQ(out.client.size(), 6u);
  Seg a = decode(out.client[0]);
  EXPECT_VALID(a);
  EXPECT_EQ(a.src, kAdvertised);
  EXPECT_EQ(a.dst, kClient);
  EXPECT_EQ(a.flags, tf::ACK);
  EXPECT_EQ(a.seq, S(1));
  EXPECT_EQ(a.ack, C(301));
  EXPECT_EQ(a.window, 400);
  Seg probe = decode(out.client[1]);
  EXPECT_VALID(probe);
  EXPECT_EQ(probe.seq, S(0)) << "one below what the client acknowledged";
  EXPECT_EQ(probe.ack, C(301));
  for (size_t i = 2; i < 6; ++i) {
    Seg d = decode(out.client[i]);
    EXPECT_VALID(d);
    EXPECT_EQ(d.flags, tf::ACK);
    EXPECT_EQ(d.seq, S(1));
    EXPECT_EQ(d.ack, C(301));
    EXPECT_EQ(d.window, 400);
    EXPECT_TRUE(d.payload.empty());
  }

  out.clear();
  client(from_client().seq(C(301)).ack(S(1)).data(100).build(), Source::Lan);
  kernel(from_kernel().seq(K(1)).ack(C(401)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  EXPECT_EQ(decode(out.client[0]).ack, C(401)) << "no gate any more";
}

// ---------------------------------------------------------------------------------------------
// Bad input: a golden table of {description, input, verdict counter}; nothing may be emitted.

struct BadInputCase {
  const char* description;
  std::vector<uint8_t> (*make)(std::vector<uint8_t> good);
  uint64_t Counters::*counter;
};

const BadInputCase kBadInput[] = {
    {"TCP checksum broken by one payload bit",
     [](std::vector<uint8_t> p) {
       p.back() ^= 0x01;
       return p;
     },
     &Counters::dropped_bad_checksum},
    {"IP header checksum broken",
     [](std::vector<uint8_t> p) {
       p[8] ^= 0x01;  // TTL
       return p;
     },
     &Counters::dropped_bad_checksum},
    {"truncated below the IP total length",
     [](std::vector<uint8_t> p) {
       p.resize(p.size() - 5);
       return p;
     },
     &Counters::dropped_malformed},
    {"truncated inside the IP header",
     [](std::vector<uint8_t> p) {
       p.resize(12);
       return p;
     },
     &Counters::dropped_malformed},
    {"not for the advertised address",
     [](std::vector<uint8_t>) {
       return PacketBuilder()
           .from(kClient)
           .to(Endpoint{kAdvertised.ip, 81})
           .seq(1)
           .flags(tf::SYN)
           .build();
     },
     &Counters::dropped_malformed},
};

TEST_F(PacketLayerTest, BackupDuplex_BadClientInputCounted) {
  for (const auto& c : kBadInput) {
    SCOPED_TRACE(c.description);
    out.clear();
    start(Role::Backup, Mode::Duplex);
    client(c.make(from_client().seq(C(0)).flags(tf::SYN).data(20).build()), Source::Lan);
    EXPECT_EQ(out.total(), 0u) << "neither relayed nor injected";
    EXPECT_EQ(pl->counters().*(c.counter), 1u);
    EXPECT_EQ(pl->open_flows(), 0u);
  }
}

TEST_F(PacketLayerTest, PrimarySimplexNoFlow_ClientAck) {
  start(Role::Primary, Mode::Simplex);
  client(from_client().seq(C(1)).ack(S(1)).data(10).build(), Source::Lan);
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(pl->counters().dropped_unknown_flow, 1u);
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_KernelPacketForUnknownFake) {
  start(Role::Backup, Mode::Duplex);
  establish();
  kernel(
      from_kernel(Endpoint{Ipv4Addr(198, 19, 1, 77), 40000}).seq(K(1)).ack(C(1)).data(10).build());
  kernel(PacketBuilder().from(Endpoint{kListen.ip, 8080}).to(kFake).seq(K(1)).ack(C(1)).build());
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(pl->counters().dropped_kernel_unknown, 2u);
  EXPECT_TRUE(flow().retained.empty());
}

// ---------------------------------------------------------------------------------------------
// Port reuse and flow lifetime.

TEST_F(PacketLayerTest, BackupDuplexEstablished_ClientSynNewIsn) {
  start(Role::Backup, Mode::Duplex);
  establish();
  ConnKey old_key = key();
  client_isn = 0x12345678u;
  client(client_syn(), Source::Lan);

  EXPECT_EQ(pl->find_by_key(old_key), nullptr);
  const Flow* f = pl->find_by_key(key());
  ASSERT_NE(f, nullptr);
  EXPECT_NE(f->fake, kFake);
  EXPECT_EQ(pl->find_by_fake(kFake), nullptr);
  EXPECT_EQ(pl->open_flows(), 1u);
  EXPECT_EQ(pl->counters().flows_opened, 2u);
  ASSERT_EQ(out.kernel.size(), 1u);
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.src, f->fake);
  EXPECT_EQ(k.seq, 0x12345678u);
  EXPECT_EQ(k.flags, tf::SYN);

  out.clear();
  kernel(from_kernel(kFake).seq(K(1)).ack(old_key.isn + 1).data(10).build());  // the old socket
  EXPECT_EQ(out.total(), 0u);
  EXPECT_EQ(pl->counters().dropped_kernel_unknown, 1u);
}

TEST_F(PacketLayerTest, BackupDuplexSynReceived_ClientSynRetransmitted) {
  start(Role::Backup, Mode::Duplex);
  client(client_syn());
  kernel(kernel_syn_ack());
  out.clear();
  client(client_syn());
  EXPECT_EQ(pl->counters().flows_opened, 1u);
  EXPECT_EQ(out.kernel.size(), 1u);
  EXPECT_EQ(flow().fake, kFake);
  EXPECT_TRUE(flow().kernel_isn_known) << "same connection, state kept";
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_ClientRstThenExpire) {
  start(Role::Backup, Mode::Duplex);
  establish();
  now = t0 + 10s;
  client(from_client().seq(C(1)).ack(S(1)).flags(tf::RST).build());
  EXPECT_EQ(out.kernel.size(), 1u) << "the kernel must see the reset";
  EXPECT_EQ(pl->open_flows(), 0u);

  pl->expire(t0 + 10s + 30s);
  EXPECT_NE(pl->find_by_key(key()), nullptr) << "lingers to absorb stray packets";
  pl->expire(t0 + 10s + 31s);
  EXPECT_EQ(pl->find_by_key(key()), nullptr);
  EXPECT_EQ(pl->find_by_fake(kFake), nullptr);
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_FinExchangeThenExpire) {
  start(Role::Backup, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).flags(tf::FIN).build());
  kernel(from_kernel().seq(K(1)).ack(C(2)).flags(tf::FIN).build());
  client(from_client().seq(C(2)).ack(S(2)).build());
  EXPECT_TRUE(flow().fully_closed());

  pl->expire(t0 + 1s);  // notices the close
  EXPECT_EQ(pl->open_flows(), 0u);
  pl->expire(t0 + 1s + 30s);
  EXPECT_NE(pl->find_by_key(key()), nullptr);
  pl->expire(t0 + 1s + 31s);
  EXPECT_EQ(pl->find_by_key(key()), nullptr);
}

TEST_F(PacketLayerTest, BackupDuplexEstablished_ExpireKeepsOpenFlow) {
  start(Role::Backup, Mode::Duplex);
  establish();
  pl->expire(t0 + 24h);
  EXPECT_NE(pl->find_by_key(key()), nullptr);
  EXPECT_EQ(pl->open_flows(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Sequence wrap: here the client-facing space wraps while the kernel's does not.

TEST_F(PacketLayerTest, PrimarySimplexServerIsnNearWrap_TranslatesBothWays) {
  server_isn = 0xFFFFFFF0u;
  kernel_isn = 0x10000000u;
  client_isn = 0x7FFFFFF0u;
  start(Role::Primary, Mode::Simplex);
  establish();

  kernel(from_kernel().seq(K(1)).ack(C(1)).data(100).build());
  kernel(from_kernel().seq(K(101)).ack(C(1)).data(100).build());
  ASSERT_EQ(out.client.size(), 2u);
  Seg a = decode(out.client[0]), b = decode(out.client[1]);
  EXPECT_VALID(a);
  EXPECT_VALID(b);
  EXPECT_EQ(a.seq, 0xFFFFFFF1u);
  EXPECT_EQ(b.seq, 0x00000055u);
  EXPECT_EQ(flow().kernel_snd_nxt, SeqNum(0x000000B9u));

  wire::TcpOptions sack;
  sack.sack[0] = {SeqNum(S(151)), SeqNum(S(201))};
  sack.sack_count = 1;
  client(from_client().seq(C(1)).ack(S(51)).options(sack).build());
  ASSERT_EQ(out.kernel.size(), 1u);
  Seg k = decode(out.kernel[0]);
  EXPECT_VALID(k);
  EXPECT_EQ(k.ack, K(51));
  ASSERT_EQ(k.opts.sack_count, 1);
  EXPECT_EQ(k.opts.sack[0].left, SeqNum(K(151)));
  EXPECT_EQ(k.opts.sack[0].right, SeqNum(K(201)));

  client(from_client().seq(C(1)).ack(S(301)).build());  // beyond snd_nxt, across the wrap
  ASSERT_EQ(out.kernel.size(), 2u);
  EXPECT_EQ(decode(out.kernel[1]).ack, K(201));
}

TEST_F(PacketLayerTest, PrimaryDuplexClientIsnNearWrap_GateAcrossWrap) {
  client_isn = 0xFFFFFFF0u;
  start(Role::Primary, Mode::Duplex);
  establish();
  client(from_client().seq(C(1)).ack(S(1)).data(100).build());
  pl->on_backup_has(key(), SeqNum(C(51)), now);  // 0x23: wrapped
  kernel(from_kernel().seq(K(1)).ack(C(101)).window(400).build());
  ASSERT_EQ(out.client.size(), 1u);
  Seg c = decode(out.client[0]);
  EXPECT_VALID(c);
  EXPECT_EQ(c.ack, 0x00000023u);
  EXPECT_EQ(c.window, 400);  // 50 >> 7 == 0
}

// ---------------------------------------------------------------------------------------------
// Regression: an early backup_has notice was stamped with the time of the last packet the layer
// saw, so expire() could discard it at once after an idle spell and the SYN-ACK stayed held.
TEST_F(PacketLayerTest, PrimaryDuplexIdle_EarlyBackupHasSurvivesExpire) {
  start(Role::Primary, Mode::Duplex);
  // Some traffic at t0 (another client), then 60 s of silence.
  auto other = PacketBuilder()
                   .from(Endpoint{Ipv4Addr(198, 18, 0, 9), 1234})
                   .to(kAdvertised)
                   .seq(7)
                   .flags(tf::SYN)
                   .build();
  pl->on_client_packet(other, Source::Relay, t0);
  out.clear();
  now = t0 + 60s;
  pl->on_backup_has(key(), SeqNum(C(1)), now);  // arrives just now, ahead of the relayed SYN
  pl->expire(now);                              // the periodic timer fires in between
  client(client_syn(), Source::Relay);
  kernel(kernel_syn_ack(flow().fake));  // the other client took the first made-up address
  EXPECT_EQ(out.client.size(), 1u) << "SYN-ACK held although the backup has the SYN";
}

}  // namespace
}  // namespace us::packet
