// A single-threaded epoll loop with one-shot timers. Every adapter registers its fds here; the
// I/O-free cores never see it.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <queue>
#include <unordered_map>
#include <vector>

#include "core/vocabulary.hpp"
#include "sys/fd.hpp"

namespace us::sys {

using us::Clock;
using us::TimePoint;

class EventLoop {
 public:
  using IoHandler = std::function<void(uint32_t events)>;
  using TimerHandler = std::function<void()>;
  using TimerId = uint64_t;

  EventLoop();
  // Registers fd with the given level-triggered epoll events (EPOLLIN, EPOLLOUT, ...). The
  // handler is kept until remove().
  void add(int fd, uint32_t events, IoHandler handler);
  void modify(int fd, uint32_t events);
  void remove(int fd);
  TimerId after(std::chrono::milliseconds delay, TimerHandler handler);
  void cancel(TimerId id);
  // Called once after each batch of events: where coalesced work (flushes) happens.
  void on_idle(std::function<void()> fn) { idle_.push_back(std::move(fn)); }
  void run();
  void stop() { running_ = false; }
  TimePoint now() const { return Clock::now(); }

 private:
  void run_due_timers();

  Fd epfd_;
  bool running_ = false;
  std::unordered_map<int, std::shared_ptr<IoHandler>> handlers_;
  std::unordered_map<int, uint32_t> interest_;  // last events registered (level-triggered only)
  std::multimap<TimePoint, std::pair<TimerId, TimerHandler>> timers_;
  std::unordered_map<TimerId, std::multimap<TimePoint, std::pair<TimerId, TimerHandler>>::iterator>
      timer_index_;
  TimerId next_timer_ = 1;
  std::vector<std::function<void()>> idle_;
};

}  // namespace us::sys
