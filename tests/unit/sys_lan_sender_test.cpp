// LanSender::refuses_gso (src/sys/netdev.hpp): which failed sends make the node stop sending
// super-segments whole for good. A link that is down or gone must not: it comes back, and
// cutting would not get past it either.
#include <gtest/gtest.h>

#include <cerrno>

#include "sys/netdev.hpp"

namespace us::sys {
namespace {

TEST(LanSender, AFrameTheSocketCannotTake_RefusesGso) {
  for (int err : {EINVAL, EOPNOTSUPP, EMSGSIZE, EPROTONOSUPPORT})
    EXPECT_TRUE(LanSender::refuses_gso(err)) << err;
}

TEST(LanSender, ALinkDownOrGone_DoesNot) {
  for (int err : {ENETDOWN, ENXIO, ENODEV, ENETUNREACH, EHOSTUNREACH, EPERM, ENOBUFS, EAGAIN, 0})
    EXPECT_FALSE(LanSender::refuses_gso(err)) << err;
}

}  // namespace
}  // namespace us::sys
