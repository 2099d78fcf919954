// SendQueue (src/sys/send_queue.hpp) over real UDP sockets on loopback: what is queued arrives
// whole and in order, a full queue sends itself, and one system call carries up to 64.
#include "sys/send_queue.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "sys/fd.hpp"

namespace us::sys {
namespace {

class SendQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (Fd* fd : {&tx_, &rx_}) {
      fd->reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      ASSERT_TRUE(*fd);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      ASSERT_EQ(::bind(fd->get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    }
    socklen_t len = sizeof to_;
    ASSERT_EQ(::getsockname(rx_.get(), reinterpret_cast<sockaddr*>(&to_), &len), 0);
    timeval tv{5, 0};  // a datagram that never comes fails the test instead of hanging it
    ::setsockopt(rx_.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  std::string next() {
    char buf[2048];
    ssize_t n = ::recv(rx_.get(), buf, sizeof buf, 0);
    return n < 0 ? "<none>" : std::string(buf, static_cast<size_t>(n));
  }
  static std::span<const uint8_t> bytes(const std::string& s) {
    return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
  }

  Fd tx_, rx_;
  sockaddr_in to_{};
  SendQueue q_;
};

TEST_F(SendQueueTest, Queued_Flush_ArriveInOrderWithOneCall) {
  std::vector<std::string> sent;
  for (int i = 0; i < 10; ++i)
    sent.push_back("datagram " + std::to_string(i) + std::string(i, 'x'));
  for (const auto& s : sent) q_.push(tx_.get(), bytes(s), to_);
  EXPECT_EQ(q_.count(), 10u);
  EXPECT_EQ(q_.calls(), 0u);  // nothing leaves before the flush
  q_.flush(tx_.get());
  EXPECT_EQ(q_.count(), 0u);
  EXPECT_EQ(q_.calls(), 1u);
  EXPECT_EQ(q_.sent(), 10u);
  for (const auto& s : sent) EXPECT_EQ(next(), s);
}

TEST_F(SendQueueTest, Full_Push_SendsTheQueueFirst) {
  for (size_t i = 0; i < SendQueue::kMaxQueued + 6; ++i)
    q_.push(tx_.get(), bytes(std::to_string(i)), to_);
  EXPECT_EQ(q_.calls(), 1u);  // the 65th push sent the first 64
  EXPECT_EQ(q_.count(), 6u);
  q_.flush(tx_.get());
  EXPECT_EQ(q_.sent(), SendQueue::kMaxQueued + 6);
  for (size_t i = 0; i < SendQueue::kMaxQueued + 6; ++i) EXPECT_EQ(next(), std::to_string(i));
}

TEST_F(SendQueueTest, Built_InPlace_ArrivesAsBuilt) {
  q_.push_built(tx_.get(), to_, [](std::vector<uint8_t>& out) {
    const char* s = "sealed in place";
    out.insert(out.end(), s, s + std::strlen(s));
  });
  q_.push(tx_.get(), bytes("after it"), to_);
  q_.flush(tx_.get());
  EXPECT_EQ(next(), "sealed in place");
  EXPECT_EQ(next(), "after it");
}

TEST_F(SendQueueTest, Empty_Flush_NoCall) {
  q_.flush(tx_.get());
  EXPECT_EQ(q_.calls(), 0u);
}

}  // namespace
}  // namespace us::sys
