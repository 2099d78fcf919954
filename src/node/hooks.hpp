// Notify hooks (issue 12, item 7): `hooks.on_front` runs when this node becomes the front (it
// starts answering ARP for the advertised address), `hooks.on_alone` when it starts serving alone
// (simplex: it took over, lost its peer, or started without one). Where ARP cannot move the
// address (most clouds) on_front moves a floating IP through the provider's API (docs/DEPLOY.md).
//
// The daemon cannot start a program: after start-up it runs as nobody under a seccomp filter that
// kills it on fork or execve (docs/SECURITY.md). So, before the drop and only when a hook is
// configured, it spawns a runner: /proc/self/exe re-executed as `understudy hook-runner` (a fresh
// image: none of the daemon's memory, the peer key included, and no descriptor but its end of a
// SOCK_SEQPACKET socketpair). The runner keeps root (moving an address needs it, as keepalived's
// notify scripts do) and runs only the two commands it was given at spawn. The daemon writes one
// short line per event with a non-blocking send; a slow or dead runner costs a counted drop,
// never a blocked loop. The runner starts the hook with the event in its arguments and
// environment, kills its process group after hooks.timeout_ms, never runs two of the same hook at
// once (one more event waits and the latest wins), and exits when the daemon's end has closed and
// every event it received has run.
//
// Read order: Event and its line, Trigger (which changes fire which hook), Scheduler (the
// runner's I/O-free core), then Notifier (daemon side) and run_runner (runner side).
#pragma once
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "config/config.hpp"
#include "core/vocabulary.hpp"
#include "sys/fd.hpp"
#include "wire/address.hpp"

namespace us::node::hooks {

enum class Hook { Front, Alone };
const char* to_string(Hook);  // "front", "alone": UNDERSTUDY_EVENT and the line's first word
constexpr Hook kHooks[] = {Hook::Front, Hook::Alone};

struct Event {
  Hook hook = Hook::Front;
  Role role = Role::Primary;
  Mode mode = Mode::Starting;
  wire::Endpoint advertised;
  wire::Ipv4Addr peer;
  friend bool operator==(const Event&, const Event&) = default;
};

// One event per message: "front backup duplex 198.18.0.100:80 198.18.0.11\n".
constexpr size_t kMaxLine = 80;
std::string encode(const Event& e);
// Exactly the five words encode() writes and the newline; anything else is nullopt.
std::optional<Event> decode(std::string_view line);

// Which hooks a change of (mode, front) fires, in order: Front when front() turns true, then
// Alone when the mode turns Simplex. A backup that takes over was already the front in duplex:
// Alone only. A node that stops (front() turns false) or is rejoined fires nothing.
class Trigger {
 public:
  std::vector<Hook> on_state(Mode mode, bool front);

 private:
  Mode mode_ = Mode::Starting;
  bool front_ = false;
};

// The runner's core: no I/O, no clock. One slot per hook: running (since when, killed yet) and at
// most one event waiting behind it.
class Scheduler {
 public:
  explicit Scheduler(std::chrono::milliseconds timeout) : timeout_(timeout) {}

  // An event for its hook: returned to start now, or kept to start when the running one ends
  // (replacing one already waiting: counted in coalesced()).
  std::optional<Event> on_event(const Event& e, TimePoint now);
  // The hook's process ended (or could not start): the waiting event to start now, if any.
  std::optional<Event> on_exit(Hook h, TimePoint now);
  // Running hooks past their deadline and not yet killed: kill each (once).
  std::vector<Hook> overdue(TimePoint now);
  // The earliest deadline of a running hook not yet killed.
  std::optional<TimePoint> next_deadline() const;
  bool running(Hook h) const { return slot(h).running.has_value(); }
  bool idle() const;  // nothing running, nothing waiting
  uint64_t coalesced() const { return coalesced_; }

 private:
  struct Slot {
    std::optional<Event> running;
    TimePoint started{};
    bool killed = false;
    std::optional<Event> waiting;
  };
  Slot& slot(Hook h) { return slots_[static_cast<int>(h)]; }
  const Slot& slot(Hook h) const { return slots_[static_cast<int>(h)]; }
  std::optional<Event> start(Slot& s, const Event& e, TimePoint now);

  std::chrono::milliseconds timeout_;
  Slot slots_[2];
  uint64_t coalesced_ = 0;
};

// The daemon's side. Inactive (every call a no-op) when no hook is configured.
class Notifier {
 public:
  Notifier() = default;
  // Spawns the runner when cfg.hooks names a hook. Call as root, before the privilege drop and
  // before any other descriptor is opened (the runner closes every other one anyway).
  static Result<Notifier, std::string> start(const config::Config& cfg);

  // After every mode-machine step: sends the events Trigger fires for configured hooks.
  void on_state(Mode mode, bool front);
  bool active() const { return fd_.valid(); }
  uint64_t sent() const { return sent_; }
  uint64_t dropped() const { return dropped_; }  // the runner was slow (full socket) or gone

 private:
  sys::Fd fd_;
  bool configured_[2] = {false, false};
  Role role_ = Role::Primary;
  wire::Endpoint advertised_;
  wire::Ipv4Addr peer_;
  Trigger trigger_;
  uint64_t sent_ = 0, dropped_ = 0;
};

// The runner's side: `understudy hook-runner` (cli/main.cpp, hidden). Every value comes from the
// daemon's config, read by root before the drop; a line from the daemon that names another role,
// address or peer is refused (a compromised daemon picks when hooks run, not what they are told).
struct RunnerSettings {
  int fd = 3;
  std::filesystem::path on_front, on_alone;
  std::chrono::milliseconds timeout{30000};
  Role role = Role::Primary;
  wire::Endpoint advertised;
  wire::Ipv4Addr peer;
};
// Parses the hidden subcommand's option values; errors name the option.
Result<RunnerSettings, std::string> runner_settings(int fd, const std::string& on_front,
                                                    const std::string& on_alone,
                                                    uint64_t timeout_ms, const std::string& role,
                                                    const std::string& advertised,
                                                    const std::string& peer);
// Runs hooks until the daemon's end closes and no hook is left running; returns the exit code.
int run_runner(const RunnerSettings& s);

}  // namespace us::node::hooks
