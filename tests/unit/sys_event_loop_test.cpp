// The epoll loop: interest changes take effect (also when modify() skips an unchanged mask), a
// removed fd's handler never runs, and timers fire in order.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <vector>

#include "sys/event_loop.hpp"

namespace us::sys {
namespace {

using namespace std::chrono_literals;

struct Pipe {
  Fd r, w;
  Pipe() {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
    r.reset(fds[0]);
    w.reset(fds[1]);
  }
  void put(char c) { ASSERT_EQ(::write(w.get(), &c, 1), 1); }
};

// Runs the loop until the zero-delay timer has fired once after every ready event was handled.
void turn(EventLoop& loop) {
  loop.after(0ms, [&loop] { loop.stop(); });
  loop.run();
}

TEST(EventLoop, Readable_HandlerRunsWhileInterested) {
  EventLoop loop;
  Pipe p;
  int calls = 0;
  loop.add(p.r.get(), EPOLLIN, [&](uint32_t ev) {
    EXPECT_TRUE(ev & EPOLLIN);
    ++calls;
  });
  p.put('x');
  turn(loop);
  EXPECT_EQ(calls, 1);
}

TEST(EventLoop, ModifyToNothing_HandlerDoesNotRunThenResumes) {
  EventLoop loop;
  Pipe p;
  int calls = 0;
  loop.add(p.r.get(), EPOLLIN, [&](uint32_t) { ++calls; });
  loop.modify(p.r.get(), 0);
  loop.modify(p.r.get(), 0);  // unchanged: no system call, still paused
  p.put('x');
  turn(loop);
  EXPECT_EQ(calls, 0);
  loop.modify(p.r.get(), EPOLLIN);
  loop.modify(p.r.get(), EPOLLIN);  // unchanged
  turn(loop);
  EXPECT_EQ(calls, 1);  // level-triggered: the byte is still there
}

TEST(EventLoop, RemovedThenAddedAgain_NewInterestIsRegistered) {
  EventLoop loop;
  Pipe p;
  int first = 0, second = 0;
  loop.add(p.r.get(), EPOLLIN, [&](uint32_t) { ++first; });
  loop.remove(p.r.get());
  loop.add(p.r.get(), 0, [&](uint32_t) { ++second; });
  loop.modify(p.r.get(), EPOLLIN);  // differs from what add() registered: must reach epoll
  p.put('x');
  turn(loop);
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
}

TEST(EventLoop, Timers_FireInDeadlineOrderAndCancelledOnesNever) {
  EventLoop loop;
  std::string order;
  loop.after(2ms, [&] { order += 'b'; });
  auto cancelled = loop.after(1ms, [&] { order += 'x'; });
  loop.after(0ms, [&] { order += 'a'; });
  loop.after(3ms, [&] {
    order += 'c';
    loop.stop();
  });
  loop.cancel(cancelled);
  loop.run();
  EXPECT_EQ(order, "abc");
}

}  // namespace
}  // namespace us::sys
