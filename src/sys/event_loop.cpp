#include "sys/event_loop.hpp"

#include <sys/epoll.h>

#include <cstdlib>
#include <memory>
#include <stdexcept>

namespace us::sys {

EventLoop::EventLoop() : epfd_(::epoll_create1(EPOLL_CLOEXEC)) {
  // No epoll fd means no daemon at all: an environment failure, not a runtime condition.
  if (!epfd_) std::abort();
}

void EventLoop::add(int fd, uint32_t events, IoHandler handler) {
  handlers_[fd] = std::make_shared<IoHandler>(std::move(handler));
  interest_[fd] = events;
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  if (::epoll_ctl(epfd_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) std::abort();
}

void EventLoop::modify(int fd, uint32_t events) {
  // Adapters recompute interest after every input; most of the time it has not changed, and a
  // level-triggered registration needs no system call then.
  auto known = interest_.find(fd);
  if (known != interest_.end()) {
    if (known->second == events) return;
    known->second = events;
  }
  epoll_event ev{};
  ev.events = events;
  ev.data.fd = fd;
  ::epoll_ctl(epfd_.get(), EPOLL_CTL_MOD, fd, &ev);
}

void EventLoop::remove(int fd) {
  ::epoll_ctl(epfd_.get(), EPOLL_CTL_DEL, fd, nullptr);
  handlers_.erase(fd);
  interest_.erase(fd);
}

EventLoop::TimerId EventLoop::after(std::chrono::milliseconds delay, TimerHandler handler) {
  TimerId id = next_timer_++;
  auto it = timers_.emplace(now() + delay, std::make_pair(id, std::move(handler)));
  timer_index_[id] = it;
  return id;
}

void EventLoop::cancel(TimerId id) {
  auto it = timer_index_.find(id);
  if (it == timer_index_.end()) return;
  timers_.erase(it->second);
  timer_index_.erase(it);
}

void EventLoop::run_due_timers() {
  if (timers_.empty() || timers_.begin()->first > now()) return;
  auto t = now();
  while (!timers_.empty() && timers_.begin()->first <= t) {
    auto node = timers_.extract(timers_.begin());
    timer_index_.erase(node.mapped().first);
    node.mapped().second();
  }
}

void EventLoop::run() {
  running_ = true;
  std::vector<epoll_event> events(256);
  while (running_) {
    int timeout = -1;
    if (!timers_.empty()) {
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(timers_.begin()->first - now());
      timeout = wait.count() < 0 ? 0 : static_cast<int>(wait.count());
    }
    int n = ::epoll_wait(epfd_.get(), events.data(), static_cast<int>(events.size()), timeout);
    if (n < 0 && errno != EINTR) std::abort();
    for (int i = 0; i < n; ++i) {
      auto it = handlers_.find(events[i].data.fd);
      if (it == handlers_.end()) continue;
      auto handler = it->second;  // keeps the handler alive if it removes itself
      (*handler)(events[i].events);
      if (!running_) break;
      // A busy batch must not delay timers (heartbeats above all) past their time.
      run_due_timers();
    }
    run_due_timers();
    for (auto& fn : idle_) fn();
  }
}

}  // namespace us::sys
