#include <gtest/gtest.h>

#include <vector>

#include "node/arp_responder.hpp"
#include "wire/arp.hpp"

namespace us::node {
namespace {

using wire::ArpRepr;
using wire::Ipv4Addr;
using wire::MacAddr;

const Ipv4Addr kAdvertised(198, 18, 0, 1), kClientIp(198, 18, 0, 7);
const MacAddr kOurMac{{0x02, 0, 0, 0, 0, 0x0a}};
const MacAddr kClientMac{{0x02, 0, 0, 0, 0, 0x0c}};

std::vector<uint8_t> request(Ipv4Addr sender_ip, Ipv4Addr target_ip,
                             uint16_t op = wire::arp_op::Request) {
  ArpRepr a{op, kClientMac, sender_ip, MacAddr{}, target_ip};
  return wire::build_arp_frame(MacAddr::broadcast(), kClientMac, a);
}

const ArpResponder kResponder(kAdvertised, kOurMac);

TEST(ArpResponder, Front_RequestForTheAdvertisedAddressIsAnswered) {
  auto reply = kResponder.reply_to(request(kClientIp, kAdvertised), /*front=*/true);
  ASSERT_TRUE(reply.has_value());
  // Exactly the frame on_arp sent before the split: unicast to the asker, our MAC as the owner.
  EXPECT_EQ(*reply, wire::build_arp_frame(
                        kClientMac, kOurMac,
                        ArpRepr{wire::arp_op::Reply, kOurMac, kAdvertised, kClientMac, kClientIp}));
  const std::vector<uint8_t> head = {0x02, 0,    0,    0,    0,    0x0c, 0x02, 0,
                                     0,    0,    0,    0x0a, 0x08, 0x06, 0x00, 0x01,
                                     0x08, 0x00, 0x06, 0x04, 0x00, 0x02};
  EXPECT_EQ(std::vector<uint8_t>(reply->begin(), reply->begin() + 22), head);
}

TEST(ArpResponder, NotFront_RequestIsLeftToTheOtherNode) {
  EXPECT_FALSE(kResponder.reply_to(request(kClientIp, kAdvertised), false).has_value());
}

TEST(ArpResponder, Front_RequestForAnotherAddressIsIgnored) {
  EXPECT_FALSE(kResponder.reply_to(request(kClientIp, Ipv4Addr(198, 18, 0, 2)), true).has_value());
}

TEST(ArpResponder, Front_SomeoneElsesAnnouncementIsNotAnswered) {
  // The other node's gratuitous ARP for the advertised address: answering would fight it.
  EXPECT_FALSE(kResponder.reply_to(request(kAdvertised, kAdvertised), true).has_value());
}

TEST(ArpResponder, Front_RepliesAndMalformedFramesAreIgnored) {
  EXPECT_FALSE(
      kResponder.reply_to(request(kClientIp, kAdvertised, wire::arp_op::Reply), true).has_value());
  auto frame = request(kClientIp, kAdvertised);
  std::vector<uint8_t> truncated(frame.begin(), frame.begin() + 30);
  EXPECT_FALSE(kResponder.reply_to(truncated, true).has_value());
  std::vector<uint8_t> no_ethernet(frame.begin(), frame.begin() + 13);
  EXPECT_FALSE(kResponder.reply_to(no_ethernet, true).has_value());
}

TEST(ArpResponder, AnnouncementIsABroadcastGratuitousArp) {
  auto frame = kResponder.announcement();
  ASSERT_EQ(frame.size(), wire::kEthernetHeaderLen + wire::kArpLen);
  auto eth = wire::parse_ethernet(frame);
  ASSERT_TRUE(eth.ok());
  EXPECT_EQ(eth->dst, MacAddr::broadcast());
  EXPECT_EQ(eth->src, kOurMac);
  auto a = wire::parse_arp(eth->payload);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (ArpRepr{wire::arp_op::Request, kOurMac, kAdvertised, MacAddr{}, kAdvertised}));
}

}  // namespace
}  // namespace us::node
