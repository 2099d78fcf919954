// The backup's request cache accounting (src/message/request_cache.hpp), named <state>_<event>:
// pause when full, one finishing connection past the limit, resume once below it.
#include "message/request_cache.hpp"

#include <gtest/gtest.h>

#include <algorithm>

namespace us::message {
namespace {

const ConnKey kA{wire::Ipv4Addr(198, 18, 0, 2), 40000, 1000};
const ConnKey kB{wire::Ipv4Addr(198, 18, 0, 3), 40001, 2000};
const ConnKey kC{wire::Ipv4Addr(198, 18, 0, 4), 40002, 3000};

std::vector<ConnKey> sorted(std::vector<ConnKey> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST(RequestCache, BelowLimit_NobodyIsBlocked) {
  RequestCache c(100);
  c.add(99);
  EXPECT_FALSE(c.full_for(kA));
  EXPECT_FALSE(c.full_for(kB));
  EXPECT_EQ(c.bytes(), 99u);
}

TEST(RequestCache, AtLimit_EveryReaderIsBlocked) {
  RequestCache c(100);
  c.add(100);
  EXPECT_TRUE(c.full_for(kA));
  EXPECT_TRUE(c.full_for(kB));
}

TEST(RequestCache, Full_OfferFinishingGoesToTheFirstPartialRequestOnly) {
  RequestCache c(100);
  c.add(150);
  c.offer_finishing(kA, true);
  EXPECT_TRUE(c.finishing(kA));
  EXPECT_FALSE(c.full_for(kA));  // may read past the limit to end its request
  c.offer_finishing(kB, true);
  EXPECT_FALSE(c.finishing(kB));
  EXPECT_TRUE(c.full_for(kB));
}

TEST(RequestCache, Full_OfferWithoutPartialRequestGivesNoSlot) {
  RequestCache c(100);
  c.add(100);
  c.offer_finishing(kA, false);
  EXPECT_FALSE(c.finishing(kA));
  EXPECT_TRUE(c.full_for(kA));
}

TEST(RequestCache, BelowLimit_OfferGivesNoSlot) {
  RequestCache c(100);
  c.add(10);
  c.offer_finishing(kA, true);
  EXPECT_FALSE(c.finishing(kA));
}

TEST(RequestCache, Finishing_RequestEndedFreesTheSlotForAnother) {
  RequestCache c(100);
  c.add(100);
  c.offer_finishing(kA, true);
  EXPECT_FALSE(c.request_ended(kB));  // not B's slot
  EXPECT_TRUE(c.finishing(kA));
  EXPECT_TRUE(c.request_ended(kA));
  EXPECT_TRUE(c.full_for(kA));  // its request ended: it waits like the others
  c.offer_finishing(kB, true);
  EXPECT_TRUE(c.finishing(kB));
}

TEST(RequestCache, Full_PauseReportsOnlyTheFirstTime) {
  RequestCache c(100);
  c.add(100);
  EXPECT_TRUE(c.pause(kA));
  EXPECT_FALSE(c.pause(kA));
  EXPECT_TRUE(c.pause(kB));
  EXPECT_EQ(c.paused(), 2u);
}

TEST(RequestCache, Paused_StillFullResumesNobody) {
  RequestCache c(100);
  c.add(120);
  c.pause(kA);
  c.drop(20);  // exactly at the limit: still full
  EXPECT_TRUE(c.take_resumable().empty());
  EXPECT_EQ(c.paused(), 1u);
}

TEST(RequestCache, Paused_DropBelowLimitResumesEveryReaderOnce) {
  RequestCache c(100);
  c.add(120);
  c.pause(kA);
  c.pause(kB);
  c.drop(21);
  EXPECT_EQ(sorted(c.take_resumable()), sorted({kA, kB}));
  EXPECT_TRUE(c.take_resumable().empty());
  EXPECT_EQ(c.paused(), 0u);
}

TEST(RequestCache, Paused_GrantedFinishingIsNoLongerPaused) {
  RequestCache c(100);
  c.add(100);
  c.pause(kA);
  c.pause(kB);
  c.offer_finishing(kA, true);
  c.drop(100);
  EXPECT_EQ(c.take_resumable(), std::vector<ConnKey>{kB});
}

TEST(RequestCache, Finishing_ForgetReleasesTheSlotAndThePause) {
  RequestCache c(100);
  c.add(100);
  c.offer_finishing(kA, true);
  c.pause(kC);
  c.forget(kA);
  c.forget(kC);
  EXPECT_FALSE(c.finishing(kA));
  EXPECT_EQ(c.paused(), 0u);
  c.offer_finishing(kB, true);
  EXPECT_TRUE(c.finishing(kB));
}

}  // namespace
}  // namespace us::message
