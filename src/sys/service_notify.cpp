#include "sys/service_notify.hpp"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace us::sys {

std::string service_status(Role role, Mode mode, bool front) {
  std::string s = std::string("role ") + to_string(role) + ", mode " + to_string(mode);
  if (front) s += ", front";
  return s;
}

ServiceNotify::ServiceNotify(Role role, Send send,
                             std::optional<std::chrono::microseconds> watchdog)
    : role_(role), send_(std::move(send)), watchdog_(watchdog) {}

ServiceNotify ServiceNotify::from_environment(Role role) {
  // Without $NOTIFY_SOCKET sd_notify would return 0 and do nothing; not even calling it keeps a
  // node started by hand (or by the lab) exactly as it was.
  const char* socket = std::getenv("NOTIFY_SOCKET");
  if (socket == nullptr || *socket == '\0') return ServiceNotify(role);
  std::optional<std::chrono::microseconds> watchdog;
  uint64_t usec = 0;
  // > 0 only if $WATCHDOG_USEC is set (and $WATCHDOG_PID, if set, names this process).
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
    watchdog = std::chrono::microseconds(static_cast<int64_t>(usec));
  return ServiceNotify(
      role, [](const std::string& m) { return sd_notify(0, m.c_str()); }, watchdog);
}

void ServiceNotify::send(const std::string& message) {
  int rc = send_(message);
  // One warning: a manager that cannot be reached changes nothing about serving, and the node must
  // not log on every watchdog tick.
  if (rc < 0 && !failed_logged_) {
    failed_logged_ = true;
    spdlog::warn("node: cannot notify the service manager: {}", std::strerror(-rc));
  }
}

void ServiceNotify::on_state(Mode mode, bool front) {
  if (!active() || stopping_) return;
  std::pair<Mode, bool> now{mode, front};
  if (last_ == now) return;  // the common case, on every tick: no string is built
  last_ = now;
  std::string status = "STATUS=" + service_status(role_, mode, front);
  if (!ready_ && mode != Mode::Starting) {
    ready_ = true;
    send("READY=1\n" + status);
    return;
  }
  send(status);
}

void ServiceNotify::stopping(std::string_view why) {
  if (!active() || stopping_) return;
  stopping_ = true;
  send("STOPPING=1\nSTATUS=role " + std::string(to_string(role_)) +
       ", stopping: " + std::string(why));
}

std::optional<std::chrono::milliseconds> ServiceNotify::watchdog_every() const {
  if (!active() || !watchdog_) return std::nullopt;
  // Half the interval, as sd_watchdog_enabled(3) advises: one late turn of the loop is not a kill.
  auto half = std::chrono::duration_cast<std::chrono::milliseconds>(*watchdog_ / 2);
  return std::max(half, std::chrono::milliseconds(1));
}

void ServiceNotify::watchdog() {
  if (active() && watchdog_) send("WATCHDOG=1");
}

}  // namespace us::sys
