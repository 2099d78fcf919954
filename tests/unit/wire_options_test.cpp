#include <gtest/gtest.h>

#include <optional>
#include <random>
#include <vector>

#include "wire/tcp.hpp"
#include "wire/tcp_options.hpp"

namespace us::wire {
namespace {

const Endpoint kClient{Ipv4Addr(203, 0, 113, 7), 51000};
const Endpoint kServer{Ipv4Addr(198, 18, 0, 1), 80};

std::vector<uint8_t> packet_with_options(const std::vector<uint8_t>& opts,
                                         uint8_t flags = tcp_flags::ACK) {
  static const std::vector<uint8_t> kData{'a', 'b', 'c'};
  return build_tcp_packet({.src = kClient,
                           .dst = kServer,
                           .seq = SeqNum(1000),
                           .ack = SeqNum(0xfffffff0u),
                           .flags = flags,
                           .window = 500,
                           .options = opts,
                           .payload = kData});
}

// The golden SYN's options: MSS 1460, SACK-perm, TS, NOP, wscale 7.
const std::vector<uint8_t> kSynOptions{0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x00, 0x9c,
                                       0x3e, 0x4f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07};

// An ACK with NOP NOP TS and NOP NOP SACK(2 blocks) straddling the wrap.
const std::vector<uint8_t> kAckOptions{
    0x01, 0x01, 0x08, 0x0a, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // TS
    0x01, 0x01, 0x05, 0x12,                                                  // SACK, 18 bytes
    0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0x10,                          // [0xffffff00, 0x10)
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x02, 0x00};                         // [0x100, 0x200)

TcpPacket parsed(std::vector<uint8_t>& pkt) {
  auto r = parse_tcp_packet(pkt, true);
  EXPECT_TRUE(r.ok());
  return *r;
}

TEST(TcpOptions, ParsesSynOptions) {
  auto o = parse_options(kSynOptions);
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->mss, 1460);
  EXPECT_EQ(o->wscale, 7);
  EXPECT_TRUE(o->sack_permitted);
  EXPECT_EQ(o->timestamp, (std::pair<uint32_t, uint32_t>{0x009c3e4fu, 0u}));
}

TEST(TcpOptions, ParsesSackBlocks) {
  auto o = parse_options(kAckOptions);
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->mss.has_value());
  EXPECT_EQ(o->timestamp, (std::pair<uint32_t, uint32_t>{0x11223344u, 0x55667788u}));
  ASSERT_EQ(o->sack_count, 2);
  EXPECT_EQ(o->sack[0], (SackBlock{SeqNum(0xffffff00u), SeqNum(0x10)}));
  EXPECT_EQ(o->sack[1], (SackBlock{SeqNum(0x100), SeqNum(0x200)}));
}

TEST(TcpOptions, EmptyAndEolAndUnknown) {
  EXPECT_TRUE(parse_options({}).ok());
  // EOL ends the list: what follows is padding, even if it looks malformed.
  const std::vector<uint8_t> eol{0x02, 0x04, 0x05, 0xb4, 0x00, 0x02, 0x01, 0xff};
  auto a = parse_options(eol);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->mss, 1460);
  // Unknown kind 30 (MPTCP) with length 4 is skipped.
  const std::vector<uint8_t> unknown{0x1e, 0x04, 0xaa, 0xbb, 0x03, 0x03, 0x02, 0x00};
  auto b = parse_options(unknown);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->wscale, 2);
}

TEST(TcpOptions, RejectsMalformedLengths) {
  const std::vector<std::vector<uint8_t>> bad{
      {0x02},                                // kind without a length byte
      {0x02, 0x00, 0x05, 0xb4},              // length 0 would loop forever
      {0x1e, 0x01, 0x00, 0x00},              // length 1
      {0x02, 0x08, 0x05, 0xb4},              // runs past the end
      {0x02, 0x03, 0x05, 0x01},              // MSS must be 4
      {0x03, 0x04, 0x07, 0x00},              // wscale must be 3
      {0x04, 0x03, 0x00, 0x00},              // SACK-permitted must be 2
      {0x08, 0x06, 0x00, 0x00, 0x00, 0x00},  // TS must be 10
      {0x05, 0x06, 0x00, 0x00, 0x00, 0x00},  // SACK block is 8 bytes
  };
  for (const auto& opts : bad) {
    auto r = parse_options(opts);
    ASSERT_FALSE(r.ok()) << testing::PrintToString(opts);
    EXPECT_EQ(r.error(), ParseError::BadOption);
  }
}

TEST(TcpOptions, StripTimestampsLeavesValidSegment) {
  std::vector<uint8_t> pkt = packet_with_options(kSynOptions, tcp_flags::SYN);
  TcpPacket p = parsed(pkt);
  size_t hlen = p.tcp.header_len();
  ASSERT_TRUE(strip_timestamps(p.tcp));
  EXPECT_EQ(p.tcp.header_len(), hlen);
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
  auto o = parse_options(p.tcp.options());
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->timestamp.has_value());
  EXPECT_EQ(o->mss, 1460);
  EXPECT_EQ(o->wscale, 7);
  EXPECT_TRUE(o->sack_permitted);
  EXPECT_FALSE(strip_timestamps(p.tcp));  // nothing left to strip
  EXPECT_TRUE(parse_tcp_packet(pkt, true).ok());
}

TEST(TcpOptions, StripTimestampsAtOddOffset) {
  // NOP, TS, NOP: the TS starts on an odd byte, so its words straddle the checksum word grid.
  std::vector<uint8_t> opts{0x01, 0x08, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 0x01};
  std::vector<uint8_t> pkt = packet_with_options(opts);
  TcpPacket p = parsed(pkt);
  ASSERT_TRUE(strip_timestamps(p.tcp));
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
  auto o = parse_options(p.tcp.options());
  ASSERT_TRUE(o.ok());
  EXPECT_FALSE(o->timestamp.has_value());
}

TEST(TcpOptions, TranslateSackAcrossTheWrap) {
  std::vector<uint8_t> pkt = packet_with_options(kAckOptions);
  TcpPacket p = parsed(pkt);
  // Client-facing -> kernel space: the inverse of the kernel->client offset.
  SeqOffset kernel_to_client = SeqOffset::between(SeqNum(0x00000100u), SeqNum(0xfffff000u));
  translate_sack(p.tcp, kernel_to_client.inverse());
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
  auto o = parse_options(p.tcp.options());
  ASSERT_TRUE(o.ok());
  ASSERT_EQ(o->sack_count, 2);
  EXPECT_EQ(o->sack[0].left, kernel_to_client.unapply(SeqNum(0xffffff00u)));
  EXPECT_EQ(o->sack[0].right, kernel_to_client.unapply(SeqNum(0x10)));
  EXPECT_EQ(o->sack[1].left, kernel_to_client.unapply(SeqNum(0x100)));
  EXPECT_EQ(o->sack[1].right, kernel_to_client.unapply(SeqNum(0x200)));
  EXPECT_EQ(o->sack[0].left.raw(), 0xffffee00u);  // 0xffffff00 - 0x1100
  // Blocks keep their size.
  EXPECT_EQ(o->sack[0].right - o->sack[0].left, 0x110);
  // TS untouched.
  EXPECT_EQ(o->timestamp->first, 0x11223344u);
  // And back again, byte for byte.
  translate_sack(p.tcp, kernel_to_client);
  EXPECT_EQ(pkt, packet_with_options(kAckOptions));
}

TEST(TcpOptions, TranslateSackRandomAlignmentAndOffsets) {
  auto rng = [gen = std::mt19937(5)]() mutable { return static_cast<uint32_t>(gen()); };
  for (int i = 0; i < 500; ++i) {
    std::vector<uint8_t> opts(rng() % 3, 0x01);  // 0-2 NOPs shift the alignment
    size_t blocks = 1 + rng() % 4;
    opts.push_back(0x05);
    opts.push_back(static_cast<uint8_t>(2 + 8 * blocks));
    std::vector<SackBlock> orig;
    for (size_t b = 0; b < blocks; ++b) {
      SackBlock blk{SeqNum(rng()), SeqNum(rng())};
      orig.push_back(blk);
      for (uint32_t v : {blk.left.raw(), blk.right.raw()})
        for (int s = 24; s >= 0; s -= 8) opts.push_back(static_cast<uint8_t>(v >> s));
    }
    if (opts.size() > 40) continue;
    std::vector<uint8_t> pkt = packet_with_options(opts);
    TcpPacket p = parsed(pkt);
    SeqOffset off{static_cast<uint32_t>(rng())};
    translate_sack(p.tcp, off);
    ASSERT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst())) << i;
    auto o = parse_options(p.tcp.options());
    ASSERT_TRUE(o.ok());
    ASSERT_EQ(o->sack_count, blocks);
    for (size_t b = 0; b < blocks; ++b) {
      ASSERT_EQ(o->sack[b].left, off.apply(orig[b].left));
      ASSERT_EQ(o->sack[b].right, off.apply(orig[b].right));
    }
  }
}

TEST(TcpOptions, ClampMss) {
  std::vector<uint8_t> pkt = packet_with_options(kSynOptions, tcp_flags::SYN);
  TcpPacket p = parsed(pkt);
  EXPECT_FALSE(clamp_mss(p.tcp, 1500));
  EXPECT_FALSE(clamp_mss(p.tcp, 1460));
  EXPECT_TRUE(clamp_mss(p.tcp, 1400));
  EXPECT_TRUE(p.tcp.checksum_ok(p.ip.src(), p.ip.dst()));
  EXPECT_EQ(parse_options(p.tcp.options())->mss, 1400);
  // No MSS option: nothing to clamp.
  std::vector<uint8_t> ack = packet_with_options(kAckOptions);
  TcpPacket q = parsed(ack);
  EXPECT_FALSE(clamp_mss(q.tcp, 536));
}

TEST(TcpOptions, RewritesLeaveMalformedOptionsAlone) {
  // A valid TS followed by a truncated MSS: parse refuses it, rewrites touch nothing.
  std::vector<uint8_t> opts{0x08, 0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 0x02, 0x09};
  std::vector<uint8_t> pkt = packet_with_options(opts);
  const std::vector<uint8_t> before = pkt;
  TcpPacket p = parsed(pkt);
  EXPECT_FALSE(parse_options(p.tcp.options()).ok());
  EXPECT_FALSE(strip_timestamps(p.tcp));
  EXPECT_FALSE(clamp_mss(p.tcp, 100));
  translate_sack(p.tcp, SeqOffset{99});
  EXPECT_EQ(pkt, before);
}

TEST(TcpOptions, EncodeSynAckRoundTrips) {
  TcpOptions in;
  in.mss = 1460;
  in.wscale = 7;
  in.sack_permitted = true;
  in.timestamp = std::pair<uint32_t, uint32_t>{0xdeadbeefu, 0x009c3e4fu};
  std::vector<uint8_t> enc = encode_options(in);
  EXPECT_EQ(enc.size(), 20u);
  EXPECT_EQ(enc.size() % 4, 0u);
  auto out = parse_options(enc);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->mss, in.mss);
  EXPECT_EQ(out->wscale, in.wscale);
  EXPECT_EQ(out->sack_permitted, in.sack_permitted);
  EXPECT_EQ(out->timestamp, in.timestamp);
  // Usable as-is in a fabricated SYN/ACK.
  std::vector<uint8_t> pkt = packet_with_options(enc, tcp_flags::SYN | tcp_flags::ACK);
  EXPECT_TRUE(parse_tcp_packet(pkt, true).ok());
}

TEST(TcpOptions, EncodeEveryCombination) {
  for (int mask = 0; mask < 16; ++mask) {
    TcpOptions in;
    if (mask & 1) in.mss = 536;
    if (mask & 2) in.wscale = 14;
    in.sack_permitted = (mask & 4) != 0;
    if (mask & 8) in.timestamp = std::pair<uint32_t, uint32_t>{1, 2};
    std::vector<uint8_t> enc = encode_options(in);
    ASSERT_EQ(enc.size() % 4, 0u) << mask;
    ASSERT_LE(enc.size(), 40u);
    auto out = parse_options(enc);
    ASSERT_TRUE(out.ok()) << mask;
    EXPECT_EQ(out->mss, in.mss);
    EXPECT_EQ(out->wscale, in.wscale);
    EXPECT_EQ(out->sack_permitted, in.sack_permitted);
    EXPECT_EQ(out->timestamp, in.timestamp);
  }
}

TEST(TcpOptions, EncodeSackDropsBlocksThatDoNotFit) {
  TcpOptions in;
  in.timestamp = std::pair<uint32_t, uint32_t>{1, 2};
  in.sack_count = 4;
  for (uint32_t i = 0; i < 4; ++i)
    in.sack[i] = SackBlock{SeqNum(0xfffffff0u + 100 * i), SeqNum(0xfffffff0u + 100 * i + 50)};
  std::vector<uint8_t> enc = encode_options(in);
  EXPECT_LE(enc.size(), 40u);
  auto out = parse_options(enc);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->sack_count, 3);  // 12 (TS) + 4 + 3*8 = 40
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(out->sack[i], in.sack[i]);
  in.timestamp.reset();
  out = parse_options(encode_options(in));
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->sack_count, 4);
}

// The parsing rules of tcp_options.hpp, written out again independently: options up to EOL; NOP
// is one byte; any other kind needs a length byte >= 2 that stays inside the area, and the known
// kinds their fixed sizes (SACK: 2 + 8n, n >= 1); values of a repeated kind: the last one wins,
// SACK blocks accumulate up to four.
std::optional<TcpOptions> reference_parse(const std::vector<uint8_t>& o) {
  TcpOptions out;
  auto be32 = [&](size_t at) {
    return uint32_t{o[at]} << 24 | uint32_t{o[at + 1]} << 16 | uint32_t{o[at + 2]} << 8 | o[at + 3];
  };
  size_t i = 0;
  while (i < o.size() && o[i] != tcp_opt::EOL) {
    if (o[i] == tcp_opt::NOP) {
      ++i;
      continue;
    }
    if (i + 1 >= o.size()) return std::nullopt;
    const uint8_t kind = o[i];
    const size_t len = o[i + 1];
    if (len < 2 || i + len > o.size()) return std::nullopt;
    if (kind == tcp_opt::MSS) {
      if (len != 4) return std::nullopt;
      out.mss = static_cast<uint16_t>(o[i + 2] << 8 | o[i + 3]);
    } else if (kind == tcp_opt::WSCALE) {
      if (len != 3) return std::nullopt;
      out.wscale = o[i + 2];
    } else if (kind == tcp_opt::SACK_PERMITTED) {
      if (len != 2) return std::nullopt;
      out.sack_permitted = true;
    } else if (kind == tcp_opt::TIMESTAMP) {
      if (len != 10) return std::nullopt;
      out.timestamp = std::pair{be32(i + 2), be32(i + 6)};
    } else if (kind == tcp_opt::SACK) {
      if (len < 10 || (len - 2) % 8 != 0) return std::nullopt;
      for (size_t b = i + 2; b + 8 <= i + len && out.sack_count < 4; b += 8)
        out.sack[out.sack_count++] = SackBlock{SeqNum(be32(b)), SeqNum(be32(b + 4))};
    }
    i += len;
  }
  return out;
}

// Untrusted bytes, mostly of known kinds so that lengths are often nearly right: parse_options
// never crashes, and its verdict and every parsed value agree with the rules above. Both verdicts
// must occur often, or the comparison proves little.
TEST(TcpOptions, RandomBytesParseAsTheRulesSay) {
  auto rng = [gen = std::mt19937(8)]() mutable { return static_cast<uint32_t>(gen()); };
  int accepted = 0, refused = 0;
  for (int i = 0; i < 20000; ++i) {
    std::vector<uint8_t> opts(rng() % 41);
    for (auto& b : opts) b = static_cast<uint8_t>(rng() % 12);  // mostly known kinds
    auto got = parse_options(opts);
    auto want = reference_parse(opts);
    ASSERT_EQ(got.ok(), want.has_value()) << "iteration " << i;
    if (!want) {
      ++refused;
      EXPECT_EQ(got.error(), ParseError::BadOption);
      continue;
    }
    ++accepted;
    ASSERT_EQ(got->mss, want->mss) << "iteration " << i;
    ASSERT_EQ(got->wscale, want->wscale) << "iteration " << i;
    ASSERT_EQ(got->sack_permitted, want->sack_permitted) << "iteration " << i;
    ASSERT_EQ(got->timestamp, want->timestamp) << "iteration " << i;
    ASSERT_EQ(got->sack_count, want->sack_count) << "iteration " << i;
    for (size_t b = 0; b < want->sack_count; ++b) ASSERT_EQ(got->sack[b], want->sack[b]);
  }
  EXPECT_GE(accepted, 1000);
  EXPECT_GE(refused, 1000);
}

}  // namespace
}  // namespace us::wire
