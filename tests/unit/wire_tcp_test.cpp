#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "wire/checksum.hpp"
#include "wire/ipv4.hpp"
#include "wire/tcp.hpp"
#include "wire/tcp_options.hpp"

namespace us::wire {
namespace {

// A real Linux SYN, 192.168.0.104:42150 -> 192.168.0.1:80, checksums computed independently.
// Options: MSS 1460, SACK-permitted, TS (val 0x009c3e4f, ecr 0), NOP, wscale 7.
const std::vector<uint8_t> kSyn = {
    // IPv4: ver/ihl, tos, total len 60, ident 0x1c46, DF, TTL 64, TCP, checksum 0x9cbc
    0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x9c, 0xbc, 0xc0, 0xa8, 0x00, 0x68,
    0xc0, 0xa8, 0x00, 0x01,
    // TCP: ports, seq 0x3a6b8b2c, ack 0, doff 10, SYN, window 64240, checksum 0x21dc, urg 0
    0xa4, 0xa6, 0x00, 0x50, 0x3a, 0x6b, 0x8b, 0x2c, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0,
    0x21, 0xdc, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x9c, 0x3e, 0x4f,
    0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07};

uint16_t be16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>((b[off] << 8) | b[off + 1]);
}

// Both checksums of a fresh full computation over a copy of the packet.
struct Sums {
  uint16_t ip;
  uint16_t tcp;
};
Sums recomputed(const std::vector<uint8_t>& pkt) {
  std::vector<uint8_t> copy = pkt;
  auto p = parse_tcp_packet(copy, false);
  EXPECT_TRUE(p.ok());
  p->ip.fill_header_checksum();
  p->tcp.fill_checksum(p->ip.src(), p->ip.dst());
  return {p->ip.header_checksum(), p->tcp.checksum()};
}

void expect_checksums_fresh(const std::vector<uint8_t>& pkt, const TcpPacket& p) {
  Sums s = recomputed(pkt);
  EXPECT_EQ(p.ip.header_checksum(), s.ip);
  EXPECT_EQ(p.tcp.checksum(), s.tcp);
  EXPECT_TRUE(p.ip.header_checksum_ok());
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
}

TEST(TcpGolden, ParsesRealSyn) {
  std::vector<uint8_t> pkt = kSyn;
  auto r = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(r.ok()) << to_string(r.error());
  const TcpPacket& p = *r;
  EXPECT_EQ(p.ip.header_len(), 20u);
  EXPECT_EQ(p.ip.total_len(), 60);
  EXPECT_EQ(p.ip.protocol(), 6);
  EXPECT_EQ(p.ip.ttl(), 64);
  EXPECT_EQ(p.ip.ident(), 0x1c46);
  EXPECT_EQ(p.ip.src(), Ipv4Addr(192, 168, 0, 104));
  EXPECT_EQ(p.ip.dst(), Ipv4Addr(192, 168, 0, 1));
  EXPECT_EQ(p.src(), (Endpoint{Ipv4Addr(192, 168, 0, 104), 42150}));
  EXPECT_EQ(p.dst(), (Endpoint{Ipv4Addr(192, 168, 0, 1), 80}));
  EXPECT_EQ(p.tcp.seq(), SeqNum(0x3a6b8b2c));
  EXPECT_EQ(p.tcp.ack(), SeqNum(0));
  EXPECT_EQ(p.tcp.header_len(), 40u);
  EXPECT_EQ(p.tcp.flags(), tcp_flags::SYN);
  EXPECT_TRUE(p.tcp.has(tcp_flags::SYN));
  EXPECT_FALSE(p.tcp.has(tcp_flags::ACK));
  EXPECT_EQ(p.tcp.window(), 64240);
  EXPECT_EQ(p.tcp.checksum(), 0x21dc);
  EXPECT_EQ(p.tcp.options().size(), 20u);
  EXPECT_TRUE(p.tcp.payload().empty());
  EXPECT_EQ(p.tcp.seg_len(), 1u);

  auto o = parse_options(p.tcp.options());
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->mss, 1460);
  EXPECT_EQ(o->wscale, 7);
  EXPECT_TRUE(o->sack_permitted);
  ASSERT_TRUE(o->timestamp.has_value());
  EXPECT_EQ(o->timestamp->first, 0x009c3e4fu);
  EXPECT_EQ(o->timestamp->second, 0u);
  EXPECT_EQ(o->sack_count, 0);
}

TEST(TcpGolden, RewriteKeepsBothChecksumsExact) {
  std::vector<uint8_t> pkt = kSyn;
  auto r = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(r.ok());
  TcpPacket p = *r;

  // As the packet layer does: client -> advertised address becomes client -> local kernel, with the
  // sequence space shifted across the 2^32 wrap.
  Endpoint new_dst{Ipv4Addr(198, 18, 0, 2), 8080};
  Endpoint new_src{Ipv4Addr(198, 18, 0, 100), 50000};
  p.set_dst(new_dst);
  expect_checksums_fresh(pkt, p);
  p.set_src(new_src);
  expect_checksums_fresh(pkt, p);
  SeqOffset off{0xd0000000u};
  p.tcp.set_seq(off.apply(p.tcp.seq()));
  expect_checksums_fresh(pkt, p);
  p.tcp.set_ack(SeqNum(0xfffffff0u));
  expect_checksums_fresh(pkt, p);

  EXPECT_EQ(p.dst(), new_dst);
  EXPECT_EQ(p.src(), new_src);
  EXPECT_EQ(p.tcp.seq().raw(), 0x3a6b8b2cu + 0xd0000000u);
  EXPECT_EQ(p.tcp.ack().raw(), 0xfffffff0u);
  // The bytes on the wire, not only the getters.
  EXPECT_EQ(be16(pkt, 20 + 2), 8080);
  EXPECT_EQ(pkt[16], 198);
  EXPECT_EQ(pkt[19], 2);

  // And it still parses with verification, as the kernel will see it.
  auto again = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(again.ok());
  // Options and everything else untouched.
  EXPECT_TRUE(std::equal(kSyn.begin() + 40, kSyn.end(), pkt.begin() + 40));
}

TEST(TcpView, EverySetterMatchesFullRecomputationRandomly) {
  auto rng = [gen = std::mt19937(2024)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 3000; ++i) {
    std::vector<uint8_t> pkt = kSyn;
    TcpPacket p = *parse_tcp_packet(pkt, true);
    for (int step = 0; step < 8; ++step) {
      switch (rng() % 10) {
        case 0:
          p.tcp.set_src_port(static_cast<uint16_t>(rng()));
          break;
        case 1:
          p.tcp.set_dst_port(static_cast<uint16_t>(rng()));
          break;
        case 2:
          p.tcp.set_seq(SeqNum(rng()));
          break;
        case 3:
          p.tcp.set_ack(SeqNum(rng()));
          break;
        case 4:
          p.tcp.set_window(static_cast<uint16_t>(rng()));
          break;
        case 5:
          p.tcp.set_flags(static_cast<uint8_t>(rng()));
          break;
        case 6:
          p.set_src(Endpoint{Ipv4Addr(rng()), static_cast<uint16_t>(rng())});
          break;
        case 7:
          p.set_dst(Endpoint{Ipv4Addr(rng()), static_cast<uint16_t>(rng())});
          break;
        case 8:
          p.ip.set_ttl(static_cast<uint8_t>(rng()));
          break;
        case 9: {
          Ipv4Addr old = p.ip.src();
          Ipv4Addr now(rng());
          p.ip.set_src(now);
          p.tcp.pseudo_header_replace(old, now);
          break;
        }
      }
      Sums s = recomputed(pkt);
      ASSERT_EQ(p.ip.header_checksum(), s.ip) << "iteration " << i << " step " << step;
      ASSERT_EQ(p.tcp.checksum(), s.tcp) << "iteration " << i << " step " << step;
    }
  }
}

TEST(TcpView, SettersWriteTheFields) {
  std::vector<uint8_t> pkt = kSyn;
  TcpPacket p = *parse_tcp_packet(pkt, true);
  p.tcp.set_flags(tcp_flags::SYN | tcp_flags::ACK);
  EXPECT_TRUE(p.tcp.has(tcp_flags::ACK));
  EXPECT_EQ(p.tcp.header_len(), 40u);  // data offset shares the word and survives
  p.tcp.set_window(1234);
  EXPECT_EQ(p.tcp.window(), 1234);
  p.ip.set_ttl(3);
  EXPECT_EQ(p.ip.ttl(), 3);
  EXPECT_EQ(p.ip.protocol(), 6);
  EXPECT_TRUE(p.ip.header_checksum_ok());
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
}

TEST(TcpView, SegLenCountsSynFinAndPayload) {
  const std::vector<uint8_t> data(100, 'x');
  TcpSegmentSpec spec{.src = {Ipv4Addr(10, 0, 0, 1), 1000},
                      .dst = {Ipv4Addr(10, 0, 0, 2), 80},
                      .seq = SeqNum(1),
                      .ack = SeqNum(2),
                      .flags = tcp_flags::ACK | tcp_flags::FIN,
                      .payload = data};
  auto pkt = build_tcp_packet(spec);
  auto p = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->tcp.seg_len(), 101u);
  p->tcp.set_flags(tcp_flags::SYN | tcp_flags::FIN);
  EXPECT_EQ(p->tcp.seg_len(), 102u);
  p->tcp.set_flags(tcp_flags::ACK);
  EXPECT_EQ(p->tcp.seg_len(), 100u);
}

TEST(Ipv4Parse, TrimsEthernetPadding) {
  // A bare ACK is 40 bytes; Ethernet pads the frame payload to 46.
  std::vector<uint8_t> pkt = build_tcp_packet({.src = {Ipv4Addr(10, 0, 0, 1), 1000},
                                               .dst = {Ipv4Addr(10, 0, 0, 2), 80},
                                               .seq = SeqNum(5),
                                               .ack = SeqNum(6),
                                               .flags = tcp_flags::ACK,
                                               .window = 512});
  ASSERT_EQ(pkt.size(), 40u);
  pkt.insert(pkt.end(), 6, 0xee);
  auto p = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(p.ok()) << to_string(p.error());
  EXPECT_EQ(p->ip.bytes().size(), 40u);
  EXPECT_EQ(p->tcp.bytes().size(), 20u);
  EXPECT_TRUE(p->tcp.payload().empty());
  EXPECT_EQ(p->tcp.seg_len(), 0u);
}

void refill_ip_checksum(std::vector<uint8_t>& pkt) {
  pkt[10] = pkt[11] = 0;
  uint16_t c = internet_checksum(std::span(pkt).first(20));
  pkt[10] = static_cast<uint8_t>(c >> 8);
  pkt[11] = static_cast<uint8_t>(c);
}

ParseError parse_error(std::vector<uint8_t> pkt, bool verify = true) {
  auto r = parse_tcp_packet(pkt, verify);
  EXPECT_FALSE(r.ok());
  return r.ok() ? ParseError::BadOption : r.error();  // any value: the EXPECT already failed
}

TEST(Ipv4Parse, RejectsTruncated) {
  for (size_t n : {0, 1, 19}) {
    std::vector<uint8_t> pkt(kSyn.begin(), kSyn.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(parse_error(pkt), ParseError::TooShort) << n;
  }
  // Header intact, total length says 60, the buffer holds 59.
  std::vector<uint8_t> cut(kSyn.begin(), kSyn.end() - 1);
  EXPECT_EQ(parse_error(cut), ParseError::TooShort);
  // IHL says 24 bytes but only 20 are there.
  std::vector<uint8_t> hdr(kSyn.begin(), kSyn.begin() + 20);
  hdr[0] = 0x46;
  EXPECT_EQ(parse_error(hdr), ParseError::TooShort);
}

TEST(Ipv4Parse, RejectsBadVersion) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[0] = 0x65;
  refill_ip_checksum(pkt);
  EXPECT_EQ(parse_error(pkt), ParseError::BadVersion);
}

TEST(Ipv4Parse, RejectsBadHeaderLength) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[0] = 0x44;
  EXPECT_EQ(parse_error(pkt), ParseError::BadHeaderLength);
}

TEST(Ipv4Parse, RejectsTotalLengthShorterThanHeader) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[2] = 0;
  pkt[3] = 19;
  refill_ip_checksum(pkt);
  EXPECT_EQ(parse_error(pkt), ParseError::BadTotalLength);
}

TEST(Ipv4Parse, RejectsBadHeaderChecksum) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[8] = 63;  // TTL changed without fixing the checksum
  EXPECT_EQ(parse_error(pkt), ParseError::BadChecksum);
  EXPECT_EQ(parse_error(pkt, false), ParseError::BadChecksum);  // the IP checksum is always checked
}

TEST(Ipv4Parse, RejectsFragments) {
  std::vector<uint8_t> mf = kSyn;
  mf[6] = 0x20;  // MF, offset 0: the first fragment
  refill_ip_checksum(mf);
  EXPECT_EQ(parse_error(mf), ParseError::Fragment);
  std::vector<uint8_t> later = kSyn;
  later[6] = 0x00;
  later[7] = 0x10;  // offset 16 * 8 bytes, last fragment
  refill_ip_checksum(later);
  EXPECT_EQ(parse_error(later), ParseError::Fragment);
}

TEST(Ipv4Parse, AcceptsIpOptions) {
  // IHL 6 with one NOP/EOL option word: the TCP segment starts at 24.
  std::vector<uint8_t> pkt(kSyn.begin(), kSyn.begin() + 20);
  pkt.insert(pkt.end(), {0x01, 0x01, 0x01, 0x00});
  pkt.insert(pkt.end(), kSyn.begin() + 20, kSyn.end());
  pkt[0] = 0x46;
  pkt[3] = 64;
  refill_ip_checksum(pkt);
  pkt[10] = pkt[11] = 0;
  uint16_t c = internet_checksum(std::span(pkt).first(24));
  pkt[10] = static_cast<uint8_t>(c >> 8);
  pkt[11] = static_cast<uint8_t>(c);
  auto p = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(p.ok()) << to_string(p.error());
  EXPECT_EQ(p->ip.header_len(), 24u);
  EXPECT_EQ(p->tcp.src_port(), 42150);
}

TEST(TcpParse, RejectsNonTcp) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[9] = 17;
  refill_ip_checksum(pkt);
  EXPECT_EQ(parse_error(pkt), ParseError::NotTcp);
}

TEST(TcpParse, VerifiesTcpChecksumOnlyWhenAsked) {
  std::vector<uint8_t> pkt = kSyn;
  pkt[20 + 15] ^= 0x01;  // window changed without fixing the checksum
  EXPECT_EQ(parse_error(pkt, true), ParseError::BadChecksum);
  auto r = parse_tcp_packet(pkt, false);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->tcp.checksum_ok(r->ip.src(), r->ip.dst()));
}

TEST(TcpParse, RejectsBadSegments) {
  std::vector<uint8_t> seg(kSyn.begin() + 20, kSyn.end());
  EXPECT_EQ(parse_tcp(std::span(seg).first(19)).error(), ParseError::TooShort);
  seg[12] = 0x40;  // 16 bytes
  EXPECT_EQ(parse_tcp(seg).error(), ParseError::BadDataOffset);
  seg[12] = 0xb0;  // 44 bytes > 40 available
  EXPECT_EQ(parse_tcp(seg).error(), ParseError::BadDataOffset);
  seg[12] = 0xa0;
  EXPECT_TRUE(parse_tcp(seg).ok());
  EXPECT_EQ(parse_tcp(std::span(seg).first(20)).error(), ParseError::BadDataOffset);
}

TEST(TcpBuild, OutputParsesAndVerifies) {
  const std::vector<uint8_t> opts{0x03, 0x03, 0x05};  // wscale 5: 3 bytes, padded to 4
  const std::vector<uint8_t> data{'G', 'E', 'T', ' ', '/'};
  TcpSegmentSpec spec{.src = {Ipv4Addr(198, 18, 0, 1), 80},
                      .dst = {Ipv4Addr(198, 18, 0, 200), 40000},
                      .seq = SeqNum(0xfffffffeu),
                      .ack = SeqNum(77),
                      .flags = tcp_flags::ACK | tcp_flags::PSH,
                      .window = 29200,
                      .options = opts,
                      .payload = data,
                      .ident = 0xbeef};
  std::vector<uint8_t> pkt = build_tcp_packet(spec);
  ASSERT_EQ(pkt.size(), 20u + 24u + 5u);
  auto p = parse_tcp_packet(pkt, true);
  ASSERT_TRUE(p.ok()) << to_string(p.error());
  EXPECT_EQ(p->src(), spec.src);
  EXPECT_EQ(p->dst(), spec.dst);
  EXPECT_EQ(p->tcp.seq(), spec.seq);
  EXPECT_EQ(p->tcp.ack(), spec.ack);
  EXPECT_EQ(p->tcp.flags(), spec.flags);
  EXPECT_EQ(p->tcp.window(), 29200);
  EXPECT_EQ(p->ip.ident(), 0xbeef);
  EXPECT_EQ(p->ip.ttl(), 64);
  EXPECT_EQ(be16(pkt, 6), 0x4000);  // DF, no fragment offset
  EXPECT_EQ(p->tcp.header_len(), 24u);
  ASSERT_EQ(p->tcp.options().size(), 4u);
  EXPECT_EQ(p->tcp.options()[3], 0);  // EOL padding
  EXPECT_TRUE(
      std::equal(data.begin(), data.end(), p->tcp.payload().begin(), p->tcp.payload().end()));
  auto o = parse_options(p->tcp.options());
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->wscale, 5);
  // Matches the independently computed golden SYN when given the same fields.
  const std::vector<uint8_t> syn_opts(kSyn.begin() + 40, kSyn.end());
  std::vector<uint8_t> syn = build_tcp_packet({.src = {Ipv4Addr(192, 168, 0, 104), 42150},
                                               .dst = {Ipv4Addr(192, 168, 0, 1), 80},
                                               .seq = SeqNum(0x3a6b8b2c),
                                               .ack = SeqNum(0),
                                               .flags = tcp_flags::SYN,
                                               .window = 64240,
                                               .options = syn_opts,
                                               .ident = 0x1c46});
  EXPECT_EQ(syn, kSyn);
}

// Untrusted input: random corruption of a real packet must be refused or parsed into views that
// stay inside the buffer, never crash; and the in-place rewrites that follow parsing on the packet
// path keep both lengths and keep a right checksum right (RFC 1624 incremental updates on
// arbitrary bytes). The loop must exercise both outcomes, or it proves nothing.
TEST(TcpParse, SurvivesRandomCorruption) {
  auto rng = [gen = std::mt19937(31337)]() mutable { return static_cast<uint32_t>(gen()); };
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> pkt = kSyn;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int f = 0; f < flips; ++f) pkt[rng() % pkt.size()] = static_cast<uint8_t>(rng());
    pkt.resize(rng() % (pkt.size() + 8));
    auto r = parse_tcp_packet(pkt, i % 2 == 0);
    if (!r.ok()) {
      ++refused;
      continue;
    }
    ++accepted;
    ASSERT_LE(r->ip.bytes().size(), pkt.size());
    ASSERT_LE(r->tcp.header_len(), r->tcp.bytes().size());
    ASSERT_TRUE(r->ip.header_checksum_ok()) << "the IP header checksum is always verified";
    const bool tcp_sum_ok = r->tcp.checksum_ok(r->ip.src(), r->ip.dst());
    if (i % 2 == 0) {
      ASSERT_TRUE(tcp_sum_ok) << "asked to verify, yet accepted a bad checksum";
    }
    // Make the checksum right (corrupt fields, right sum), so every accepted packet tests that
    // the incremental updates keep it right.
    r->tcp.fill_checksum(r->ip.src(), r->ip.dst());
    const size_t total = r->ip.total_len(), header = r->tcp.header_len();
    (void)parse_options(r->tcp.options());
    (void)strip_timestamps(r->tcp);
    (void)clamp_mss(r->tcp, 1000);
    translate_sack(r->tcp, SeqOffset{12345});
    ASSERT_EQ(r->ip.total_len(), total) << "iteration " << i;
    ASSERT_EQ(r->tcp.header_len(), header) << "iteration " << i;
    ASSERT_TRUE(r->ip.header_checksum_ok()) << "iteration " << i;
    ASSERT_TRUE(r->tcp.checksum_ok(r->ip.src(), r->ip.dst())) << "iteration " << i;
  }
  // Most corruptions truncate the packet or hit the IP header and are refused; with this seed
  // 476 are accepted. A few hundred either way is fine; none means the rewrites went untested.
  EXPECT_EQ(accepted + refused, 20000);
  EXPECT_GE(accepted, 200);
  EXPECT_GE(refused, 10000);
}

TEST(ParseError, HasNames) {
  EXPECT_STREQ(to_string(ParseError::Fragment), "fragment");
  EXPECT_STREQ(to_string(ParseError::BadChecksum), "bad checksum");
}

}  // namespace
}  // namespace us::wire
