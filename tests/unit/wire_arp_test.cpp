#include <gtest/gtest.h>

#include <vector>

#include "wire/arp.hpp"

namespace us::wire {
namespace {

const MacAddr kMacA{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0a}};
const MacAddr kMacB{{0x02, 0x00, 0x00, 0x00, 0x00, 0x0b}};

// A real "who-has 192.168.0.1 tell 192.168.0.104" request, Ethernet header included, padded to 60.
const std::vector<uint8_t> kRequestFrame = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x3c, 0x22, 0xfb, 0x12, 0x34, 0x56, 0x08, 0x06,  // eth
    0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01,                                      // hdr
    0x3c, 0x22, 0xfb, 0x12, 0x34, 0x56, 0xc0, 0xa8, 0x00, 0x68,                          // sender
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,                          // target
    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,    0,
    0,    0,    0,    0};  // padding

TEST(Ethernet, ParsesHeader) {
  std::vector<uint8_t> f = kRequestFrame;
  auto e = parse_ethernet(f);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->dst, MacAddr::broadcast());
  EXPECT_EQ(e->src, (MacAddr{{0x3c, 0x22, 0xfb, 0x12, 0x34, 0x56}}));
  EXPECT_EQ(e->ethertype, kEtherTypeArp);
  EXPECT_EQ(e->payload.size(), 46u);
  std::vector<uint8_t> tiny(13);
  EXPECT_EQ(parse_ethernet(tiny).error(), ParseError::TooShort);
}

TEST(Arp, ParsesRealRequestWithPadding) {
  auto a = parse_arp(std::span(kRequestFrame).subspan(kEthernetHeaderLen));
  ASSERT_TRUE(a.ok()) << to_string(a.error());
  EXPECT_EQ(a->op, arp_op::Request);
  EXPECT_EQ(a->sender_mac, (MacAddr{{0x3c, 0x22, 0xfb, 0x12, 0x34, 0x56}}));
  EXPECT_EQ(a->sender_ip, Ipv4Addr(192, 168, 0, 104));
  EXPECT_EQ(a->target_mac, MacAddr{});
  EXPECT_EQ(a->target_ip, Ipv4Addr(192, 168, 0, 1));
}

TEST(Arp, BuildParseRoundTrip) {
  ArpRepr reply{arp_op::Reply, kMacA, Ipv4Addr(198, 18, 0, 1), kMacB, Ipv4Addr(198, 18, 0, 7)};
  std::vector<uint8_t> f = build_arp_frame(kMacB, kMacA, reply);
  ASSERT_EQ(f.size(), kEthernetHeaderLen + kArpLen);
  auto e = parse_ethernet(f);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->dst, kMacB);
  EXPECT_EQ(e->src, kMacA);
  EXPECT_EQ(e->ethertype, kEtherTypeArp);
  auto a = parse_arp(e->payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, reply);
}

TEST(Arp, BuildMatchesRealBytes) {
  ArpRepr req = *parse_arp(std::span(kRequestFrame).subspan(kEthernetHeaderLen));
  std::vector<uint8_t> f =
      build_arp_frame(MacAddr::broadcast(), MacAddr{{0x3c, 0x22, 0xfb, 0x12, 0x34, 0x56}}, req);
  EXPECT_EQ(f, std::vector<uint8_t>(kRequestFrame.begin(), kRequestFrame.begin() + 42));
}

TEST(Arp, GratuitousAnnouncement) {
  Ipv4Addr vip(198, 18, 0, 100);
  ArpRepr g = gratuitous_arp(kMacA, vip);
  EXPECT_EQ(g.op, arp_op::Request);
  EXPECT_EQ(g.sender_mac, kMacA);
  EXPECT_EQ(g.sender_ip, vip);
  EXPECT_EQ(g.target_ip, vip);
  EXPECT_EQ(g.target_mac, MacAddr{});
  std::vector<uint8_t> f = build_arp_frame(MacAddr::broadcast(), kMacA, g);
  EXPECT_EQ(*parse_arp(std::span(f).subspan(kEthernetHeaderLen)), g);
}

TEST(Arp, RejectsMalformed) {
  std::vector<uint8_t> p(kRequestFrame.begin() + 14, kRequestFrame.begin() + 42);
  EXPECT_EQ(parse_arp(std::span(p).first(27)).error(), ParseError::TooShort);
  auto with = [&](size_t i, uint8_t v) {
    std::vector<uint8_t> q = p;
    q[i] = v;
    return parse_arp(q);
  };
  EXPECT_EQ(with(1, 6).error(), ParseError::BadVersion);        // htype IEEE 802
  EXPECT_EQ(with(2, 0x86).error(), ParseError::BadVersion);     // ptype 0x86dd
  EXPECT_EQ(with(4, 8).error(), ParseError::BadHeaderLength);   // hlen
  EXPECT_EQ(with(5, 16).error(), ParseError::BadHeaderLength);  // plen
  EXPECT_EQ(with(7, 3).error(), ParseError::BadOption);         // RARP request
  EXPECT_TRUE(with(7, 2).ok());
}

}  // namespace
}  // namespace us::wire
