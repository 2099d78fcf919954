#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "packet_builder.hpp"
#include "wire/bytes.hpp"
#include "wire/checksum.hpp"
#include "wire/offload.hpp"

namespace us::wire {
namespace {

namespace tf = tcp_flags;
using test::PacketBuilder;

const Endpoint kServer{Ipv4Addr(198, 19, 0, 1), 80};
const Endpoint kClient{Ipv4Addr(198, 19, 1, 7), 40000};
// NOP, NOP, timestamps: a header longer than 20 bytes, as every data segment of Linux has.
const std::vector<uint8_t> kTimestamps{1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};

std::vector<uint8_t> frame(const VnetHeader& h, const std::vector<uint8_t>& packet) {
  std::vector<uint8_t> f(VnetHeader::kLen + packet.size());
  f[0] = h.flags;
  f[1] = h.gso_type;
  std::memcpy(&f[2], &h.hdr_len, 2);
  std::memcpy(&f[4], &h.gso_size, 2);
  std::memcpy(&f[6], &h.csum_start, 2);
  std::memcpy(&f[8], &h.csum_offset, 2);
  std::copy(packet.begin(), packet.end(), f.begin() + VnetHeader::kLen);
  return f;
}

std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 131 + 7);
  return b;
}

// What a TSO or GRO super-segment looks like: one header, the IP length of the whole, and in the
// TCP checksum field the pseudo-header's sum only (CHECKSUM_PARTIAL).
std::vector<uint8_t> super_segment(uint32_t seq, const std::vector<uint8_t>& payload,
                                   uint8_t flags) {
  auto p = PacketBuilder{}
               .from(kServer)
               .to(kClient)
               .seq(seq)
               .ack(9)
               .flags(flags)
               .raw_options(kTimestamps)
               .payload(payload)
               .build();
  size_t tcp_len = p.size() - 20;
  uint8_t pseudo[12];
  std::memcpy(pseudo, &p[12], 8);
  pseudo[8] = 0;
  pseudo[9] = 6;
  store_be16(pseudo, 10, static_cast<uint16_t>(tcp_len));
  store_be16(p, 36, static_cast<uint16_t>(~csum_fold(csum_accumulate(pseudo))));
  return p;
}

VnetHeader tso(uint16_t mss) {
  VnetHeader h;
  h.flags = VnetHeader::kNeedsCsum;
  h.gso_type = VnetHeader::kGsoTcpV4;
  h.hdr_len = 52;
  h.gso_size = mss;
  h.csum_start = 20;
  h.csum_offset = 16;
  return h;
}

TEST(Segmenter, PlainPacket_ComesOutAsItWentInWithoutACopy) {
  auto p = PacketBuilder{}.from(kClient).to(kServer).seq(5).ack(9).data(100).build();
  auto f = frame({}, p);
  Segmenter s;
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 1u);
  EXPECT_EQ(s.packets()[0].data(), f.data() + VnetHeader::kLen);
  EXPECT_EQ(std::vector<uint8_t>(s.packets()[0].begin(), s.packets()[0].end()), p);
}

TEST(Segmenter, PartialChecksum_IsCompletedToTheRealOne) {
  auto whole = PacketBuilder{}
                   .from(kServer)
                   .to(kClient)
                   .seq(5)
                   .ack(9)
                   .flags(tf::PSH)
                   .raw_options(kTimestamps)
                   .payload(pattern(999))
                   .build();
  auto partial = super_segment(5, pattern(999), tf::PSH);
  ASSERT_NE(partial, whole);
  VnetHeader h;
  h.flags = VnetHeader::kNeedsCsum;
  h.csum_start = 20;
  h.csum_offset = 16;
  auto f = frame(h, partial);
  Segmenter s;
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 1u);
  EXPECT_EQ(std::vector<uint8_t>(s.packets()[0].begin(), s.packets()[0].end()), whole);
}

TEST(Segmenter, TapFrame_SkipsItsEthernetHeaderAndCountsItInCsumStart) {
  auto whole = PacketBuilder{}
                   .from(kServer)
                   .to(kClient)
                   .seq(5)
                   .ack(9)
                   .flags(tf::PSH)
                   .raw_options(kTimestamps)
                   .payload(pattern(300))
                   .build();
  auto partial = super_segment(5, pattern(300), tf::PSH);
  std::vector<uint8_t> eth(14, 0xee);
  eth[12] = 0x08;
  eth[13] = 0x00;
  partial.insert(partial.begin(), eth.begin(), eth.end());
  VnetHeader h;
  h.flags = VnetHeader::kNeedsCsum;
  h.csum_start = 14 + 20;
  h.csum_offset = 16;
  auto f = frame(h, partial);
  Segmenter s;
  ASSERT_EQ(s.split(f, 14), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 1u);
  EXPECT_EQ(std::vector<uint8_t>(s.packets()[0].begin(), s.packets()[0].end()), whole);
  // A csum_start inside the link header is nonsense.
  h.csum_start = 10;
  auto g = frame(h, partial);
  EXPECT_EQ(s.split(g, 14), Segmenter::Outcome::Malformed);
  // A TSO frame behind the link header is cut as without it.
  auto t = super_segment(5, pattern(3000), 0);
  t.insert(t.begin(), eth.begin(), eth.end());
  auto tf14 = frame(tso(1000), t);
  ASSERT_EQ(s.split(tf14, 14), Segmenter::Outcome::Ok);
  EXPECT_EQ(s.packets().size(), 3u);
}

TEST(Segmenter, SuperSegment_IsCutIntoWholeSegmentsOfGsoSize) {
  const uint16_t mss = 1348;
  auto data = pattern(5000);
  auto f = frame(tso(mss), super_segment(1000, data, tf::PSH | tf::FIN | tf::CWR));
  Segmenter s;
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 4u);
  std::vector<uint8_t> joined;
  for (size_t k = 0; k < 4; ++k) {
    auto seg = s.packets()[k];
    std::vector<uint8_t> copy(seg.begin(), seg.end());
    EXPECT_EQ(internet_checksum(std::span(copy).first(20)), 0) << k;
    EXPECT_EQ(load_be16(copy, 4), k) << "IP id";
    auto parsed = parse_tcp_packet(copy, /*verify_tcp_checksum=*/true);
    ASSERT_TRUE(parsed.ok()) << k;
    size_t len = k < 3 ? mss : 5000 - 3 * mss;
    EXPECT_EQ(parsed->tcp.payload().size(), len);
    EXPECT_EQ(parsed->tcp.seq(), SeqNum(1000 + static_cast<uint32_t>(k * mss)));
    EXPECT_EQ(parsed->tcp.ack(), SeqNum(9));
    uint8_t want = tf::ACK | (k == 3 ? tf::PSH | tf::FIN : 0) | (k == 0 ? tf::CWR : 0);
    EXPECT_EQ(parsed->tcp.flags(), want) << k;
    EXPECT_EQ(std::vector<uint8_t>(parsed->tcp.options().begin(), parsed->tcp.options().end()),
              kTimestamps);
    joined.insert(joined.end(), parsed->tcp.payload().begin(), parsed->tcp.payload().end());
  }
  EXPECT_EQ(joined, data);
}

TEST(Segmenter, SuperSegment_OfExactMultipleAndOfOneSegment) {
  Segmenter s;
  auto f = frame(tso(1000), super_segment(1, pattern(3000), tf::PSH));
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 3u);
  for (auto seg : s.packets()) EXPECT_EQ(seg.size(), 52u + 1000u);
  auto g = frame(tso(1000), super_segment(1, pattern(700), tf::PSH));
  ASSERT_EQ(s.split(g), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 1u);
  std::vector<uint8_t> copy(s.packets()[0].begin(), s.packets()[0].end());
  EXPECT_TRUE(parse_tcp_packet(copy, true).ok());
}

TEST(Segmenter, EcnFlag_IsSegmentedLikeTcpV4) {
  auto h = tso(1000);
  h.gso_type |= VnetHeader::kGsoEcn;
  Segmenter s;
  auto f = frame(h, super_segment(1, pattern(2500), tf::CWR));
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  EXPECT_EQ(s.packets().size(), 3u);
}

// The packet layer checks every client packet's checksum itself, so a frame the kernel marked
// checked (DATA_VALID) passes through as it is.
TEST(Segmenter, DataValid_ComesOutUnchanged) {
  VnetHeader h;
  h.flags = VnetHeader::kDataValid;
  auto p = PacketBuilder{}.from(kClient).to(kServer).seq(5).ack(9).build();
  auto f = frame(h, p);
  Segmenter s;
  ASSERT_EQ(s.split(f), Segmenter::Outcome::Ok);
  ASSERT_EQ(s.packets().size(), 1u);
  EXPECT_EQ(std::vector<uint8_t>(s.packets()[0].begin(), s.packets()[0].end()), p);
}

TEST(Segmenter, BadFrames_AreRefusedNotRead) {
  Segmenter s;
  std::vector<uint8_t> tiny(5);
  EXPECT_EQ(s.split(tiny), Segmenter::Outcome::Malformed);
  auto good = super_segment(1, pattern(3000), 0);

  auto zero_mss = frame(tso(0), good);
  EXPECT_EQ(s.split(zero_mss), Segmenter::Outcome::Malformed);

  auto longer = good;
  store_be16(longer, 2, static_cast<uint16_t>(good.size() + 1));  // IP length past the end
  auto f1 = frame(tso(1000), longer);
  EXPECT_EQ(s.split(f1), Segmenter::Outcome::Malformed);

  auto deep = good;
  deep[20 + 12] = 0xf0;  // TCP header of 60 bytes
  deep.resize(60);
  store_be16(deep, 2, 60);
  auto f2 = frame(tso(1000), deep);
  EXPECT_EQ(s.split(f2), Segmenter::Outcome::Malformed);

  auto v6 = tso(1000);
  v6.gso_type = 4;  // TCPV6
  auto f3 = frame(v6, good);
  EXPECT_EQ(s.split(f3), Segmenter::Outcome::Unsupported);

  VnetHeader outside;
  outside.flags = VnetHeader::kNeedsCsum;
  outside.csum_start = 20;
  outside.csum_offset = 60000;
  auto f4 = frame(outside, good);
  EXPECT_EQ(s.split(f4), Segmenter::Outcome::Malformed);
  EXPECT_TRUE(s.packets().empty());
}

// A reply sent whole goes out in frames of a few segments each: segments [3, 6) of a 10-segment
// packet, as the LAN's segmentation will cut them.
TEST(GsoFrame, PartOfASuperSegment_HasItsOwnHeaderAndAPartialChecksum) {
  auto data = pattern(10 * 1000 - 500);
  auto whole = super_segment(7000, data, tf::PSH | tf::FIN | tf::CWR);
  auto plan = plan_segments(whole, 1000);
  ASSERT_TRUE(plan);
  ASSERT_EQ(plan->count, 10u);
  const MacAddr dst{{2, 0, 0, 0, 0, 9}}, src{{2, 0, 0, 0, 0, 1}};
  std::vector<uint8_t> out;
  append_gso_frame(*plan, whole, 3, 3, dst, src, out);
  ASSERT_EQ(out.size(), VnetHeader::kLen + 14 + 52 + 3000);
  VnetHeader h = parse_vnet_header(std::span<const uint8_t>(out).first<VnetHeader::kLen>());
  EXPECT_EQ(h.flags, VnetHeader::kNeedsCsum);
  EXPECT_EQ(h.gso_type, VnetHeader::kGsoTcpV4);  // CWR only on the whole's first segment
  EXPECT_EQ(h.gso_size, 1000);
  EXPECT_EQ(h.hdr_len, 14 + 52);
  EXPECT_EQ(h.csum_start, 14 + 20);
  EXPECT_EQ(h.csum_offset, 16);
  std::span<const uint8_t> eth = std::span<const uint8_t>(out).subspan(VnetHeader::kLen, 14);
  EXPECT_TRUE(std::equal(dst.b.begin(), dst.b.end(), eth.begin()));
  EXPECT_TRUE(std::equal(src.b.begin(), src.b.end(), eth.begin() + 6));
  EXPECT_EQ(load_be16(eth, 12), 0x0800);
  std::vector<uint8_t> ip(out.begin() + VnetHeader::kLen + 14, out.end());
  EXPECT_EQ(load_be16(ip, 2), 52 + 3000);
  EXPECT_EQ(load_be16(ip, 4), 3);  // the whole's id 0, + 3
  EXPECT_EQ(internet_checksum(std::span(ip).first(20)), 0);
  EXPECT_EQ(load_be32(ip, 24), 7000u + 3000u);
  EXPECT_EQ(ip[33], tf::ACK);  // neither PSH nor FIN (not the last), nor CWR (not the first)
  // The checksum field holds the pseudo-header's sum over this frame's length: completing it over
  // the TCP bytes, as the NIC or the kernel does per segment, gives a valid segment.
  auto completed = ip;
  store_be16(completed, 36, csum_fold(csum_accumulate(std::span(completed).subspan(20))));
  EXPECT_TRUE(parse_tcp_packet(completed, /*verify_tcp_checksum=*/true).ok());
  EXPECT_TRUE(std::equal(ip.begin() + 52, ip.end(), data.begin() + 3000));

  // The last part carries PSH and FIN and the rest of the payload.
  out.clear();
  append_gso_frame(*plan, whole, 9, 3, dst, src, out);
  std::vector<uint8_t> tail(out.begin() + VnetHeader::kLen + 14, out.end());
  EXPECT_EQ(load_be16(tail, 2), 52 + 500);
  EXPECT_EQ(tail[33], tf::ACK | tf::PSH | tf::FIN);

  // The first part keeps CWR, and asks the GSO for ECN segmentation.
  out.clear();
  append_gso_frame(*plan, whole, 0, 3, dst, src, out);
  h = parse_vnet_header(std::span<const uint8_t>(out).first<VnetHeader::kLen>());
  EXPECT_EQ(h.gso_type, VnetHeader::kGsoTcpV4 | VnetHeader::kGsoEcn);
  std::vector<uint8_t> head(out.begin() + VnetHeader::kLen + 14, out.end());
  EXPECT_EQ(head[33], tf::ACK | tf::CWR);
  EXPECT_EQ(load_be32(head, 24), 7000u);
}

}  // namespace
}  // namespace us::wire
