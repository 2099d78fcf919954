// Telling a service manager how the node is (systemd's Type=notify, docs/PACKAGING.md): READY=1
// once the node serves alone or is in duplex, STATUS= naming its role and mode on every change,
// STOPPING=1 when it stops, and WATCHDOG=1 when the unit sets WatchdogSec=. The messages go out
// through libsystemd's sd_notify, which opens a fresh AF_UNIX datagram socket for each one: the
// seccomp allow-list covers what it calls (sys/seccomp.cpp), so this works after the drop.
//
// Not run by systemd ($NOTIFY_SOCKET unset), a ServiceNotify is inactive: every call returns at
// once, nothing is sent and no timer is made; the node behaves as if this file did not exist.
#pragma once
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "core/vocabulary.hpp"

namespace us::sys {

// What STATUS= says, e.g. "role backup, mode duplex, front" (front: it owns the advertised address).
std::string service_status(Role role, Mode mode, bool front);

class ServiceNotify {
 public:
  // Sends one notification ("READY=1\nSTATUS=..."); returns 0 or a negative errno, like sd_notify.
  using Send = std::function<int(const std::string&)>;

  // Inactive.
  explicit ServiceNotify(Role role) : role_(role) {}
  // Active: `send` carries each message; `watchdog` is the WatchdogSec= the manager asked for.
  ServiceNotify(Role role, Send send, std::optional<std::chrono::microseconds> watchdog);
  // Active with sd_notify if $NOTIFY_SOCKET is set (watchdog from sd_watchdog_enabled), else
  // inactive. Reads the environment only; opens nothing.
  static ServiceNotify from_environment(Role role);

  bool active() const { return static_cast<bool>(send_); }

  // After every event that may change the mode: STATUS= when role, mode or front changed since the
  // last call, preceded by READY=1 the first time the mode is not Starting.
  void on_state(Mode mode, bool front);
  // The node is stopping (a signal, a handover, a refusal, a fail-stop): STOPPING=1 and a STATUS=
  // saying why. Later calls send nothing more.
  void stopping(std::string_view why);
  // Half the manager's watchdog interval (at least 1 ms), or nullopt if it set none: how often the
  // node calls watchdog().
  std::optional<std::chrono::milliseconds> watchdog_every() const;
  void watchdog();

 private:
  void send(const std::string& message);

  Role role_;
  Send send_;
  std::optional<std::chrono::microseconds> watchdog_;
  bool ready_ = false;
  bool stopping_ = false;
  bool failed_logged_ = false;
  std::optional<std::pair<Mode, bool>> last_;  // the (mode, front) STATUS= last named
};

}  // namespace us::sys
