// ModeMachine tests, named <state>_<event>. Fake time only: every event gets an explicit TimePoint.
#include "node/mode_machine.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <memory>
#include <sstream>
#include <string>

namespace us::node {
namespace {

using namespace std::chrono_literals;

constexpr std::chrono::milliseconds kTimeout = 300ms;
constexpr std::chrono::milliseconds kStartupWait = 2000ms;
constexpr std::chrono::milliseconds kInterval = 100ms;  // heartbeat period
constexpr uint64_t kPeerBoot = 1234;

const TimePoint kT0 = TimePoint{} + 1h;

Role other(Role r) {
  return r == Role::Primary ? Role::Backup : Role::Primary;
}

PeerView peer_of(Role self, Mode mode, uint64_t boot = kPeerBoot) {
  return PeerView{other(self), mode, boot};
}

ModeMachine starting(Role role) {
  return ModeMachine(role, kTimeout, kStartupWait, kT0);
}

// A machine that entered duplex at kT0 + 10ms with a starting peer of boot kPeerBoot.
ModeMachine duplex(Role role, TimePoint* entered = nullptr) {
  ModeMachine m = starting(role);
  const TimePoint t = kT0 + 10ms;
  EXPECT_EQ(m.on_channel_up(peer_of(role, Mode::Starting), t), Action::EnterDuplex);
  EXPECT_EQ(m.mode(), Mode::Duplex);
  if (entered) *entered = t;
  return m;
}

// A backup that took over after a heartbeat timeout; returns the time it did.
ModeMachine simplex_after_takeover(TimePoint* when) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  t += kTimeout + 1ms;
  EXPECT_EQ(m.on_tick(t), Action::TakeOver);
  *when = t;
  return m;
}

// Captures what spdlog's default logger writes, for the duration of a test.
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

// How often `needle` occurs in `text`.
size_t occurrences(const std::string& text, const std::string& needle) {
  size_t count = 0;
  for (size_t pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1))
    ++count;
  return count;
}

const std::string kMismatch =
    "the peer's config differs from ours: heartbeat.timeout_ms (ours 300, peer's 500)";

// ---- starting ----

TEST(ModeMachine, starting_channel_up) {
  for (Role role : {Role::Primary, Role::Backup}) {
    for (Mode peer_mode : {Mode::Starting, Mode::Duplex}) {
      ModeMachine m = starting(role);
      EXPECT_FALSE(m.peer_alive());
      EXPECT_EQ(m.on_channel_up(peer_of(role, peer_mode), kT0 + 50ms), Action::EnterDuplex);
      EXPECT_EQ(m.mode(), Mode::Duplex);
      EXPECT_TRUE(m.peer_alive());
      EXPECT_EQ(m.failovers(), 0u);
      EXPECT_TRUE(m.refuse_reason().empty());
      // The hello counts as a heartbeat: no timeout until kTimeout after it.
      EXPECT_EQ(m.on_tick(kT0 + 50ms + kTimeout), Action::None);
    }
  }
}

TEST(ModeMachine, starting_channel_up_logs_transition) {
  LogCapture log;
  ModeMachine m = starting(Role::Primary);
  ASSERT_EQ(m.on_channel_up(peer_of(Role::Primary, Mode::Starting), kT0), Action::EnterDuplex);
  EXPECT_NE(log.text().find("mode: starting -> duplex (channel up with backup, boot 1234)"),
            std::string::npos)
      << log.text();
}

TEST(ModeMachine, starting_heartbeat_does_not_enter_duplex) {
  ModeMachine m = starting(Role::Backup);
  for (auto t = kT0; t < kT0 + kStartupWait; t += kInterval) {
    EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Starting), t), Action::None);
    EXPECT_EQ(m.on_tick(t + 1ms), Action::None);
  }
  EXPECT_EQ(m.mode(), Mode::Starting);
  EXPECT_TRUE(m.peer_alive());
  EXPECT_FALSE(m.front());
}

// Issue 9: a node that starts while its peer serves alone joins it over the channel, and never
// goes simplex beside it (two fronts), however long the channel takes.
TEST(ModeMachine, starting_peer_simplex_waits_then_joins) {
  for (Role role : {Role::Primary, Role::Backup}) {
    LogCapture log;
    ModeMachine m = starting(role);
    for (auto t = kT0; t < kT0 + 3 * kStartupWait; t += kInterval) {
      EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), t), Action::None);
      EXPECT_EQ(m.on_tick(t + 1ms), Action::None);
    }
    EXPECT_EQ(m.mode(), Mode::Starting);
    EXPECT_FALSE(m.front());
    EXPECT_FALSE(m.stopped());
    EXPECT_NE(log.text().find("serves alone; waiting for the replication channel to join it"),
              std::string::npos)
        << log.text();
    const TimePoint up = kT0 + 3 * kStartupWait;
    EXPECT_EQ(m.on_channel_up(peer_of(role, Mode::Simplex), up), Action::EnterDuplex);
    EXPECT_EQ(m.mode(), Mode::Duplex);
    EXPECT_EQ(m.front(), role == Role::Backup);  // a joining backup takes the address
    EXPECT_NE(log.text().find("boot 1234: joining it (it serves alone)"), std::string::npos)
        << log.text();
  }
}

// The peer's heartbeats sent before it took the joiner back still say simplex: within one
// heartbeat timeout they are liveness, not "it declared us dead"; after that they are.
TEST(ModeMachine, duplex_joined_old_simplex_heartbeats_pass_then_failstop) {
  for (Role role : {Role::Primary, Role::Backup}) {
    ModeMachine m = starting(role);
    ASSERT_EQ(m.on_channel_up(peer_of(role, Mode::Simplex), kT0), Action::EnterDuplex);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), kT0 + kTimeout), Action::None);
    EXPECT_EQ(m.mode(), Mode::Duplex);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), kT0 + kTimeout + 1ms), Action::FailStop);
  }
  for (Role role : {Role::Primary, Role::Backup}) {
    // Once the peer says duplex, a later simplex heartbeat is news again at once.
    ModeMachine m = starting(role);
    ASSERT_EQ(m.on_channel_up(peer_of(role, Mode::Simplex), kT0), Action::EnterDuplex);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Duplex), kT0 + 10ms), Action::None);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), kT0 + 20ms), Action::FailStop);
  }
}

// A key that differs: the peer's datagrams fail authentication. Going simplex after the startup
// wait would make two fronts; the node refuses instead.
TEST(ModeMachine, starting_peer_unauthenticated_refuses) {
  ModeMachine m = starting(Role::Primary);
  EXPECT_EQ(m.on_peer_unauthenticated(1), Action::None);
  EXPECT_EQ(m.on_peer_unauthenticated(2), Action::None);
  EXPECT_EQ(m.on_peer_unauthenticated(3), Action::Refuse);
  EXPECT_TRUE(m.stopped());
  EXPECT_FALSE(m.front());
  EXPECT_NE(m.refuse_reason().find("its key differs from ours (peer.key_file), or it is configured "
                                   "with our role (node.role)"),
            std::string::npos);
  EXPECT_EQ(m.on_tick(kT0 + kStartupWait + 1s), Action::None);
}

TEST(ModeMachine, starting_unauthenticated_after_a_good_heartbeat_is_ignored) {
  ModeMachine m = starting(Role::Backup);
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Starting), kT0), Action::None);
  EXPECT_EQ(m.on_peer_unauthenticated(10), Action::None);  // forged ones, not a key mismatch
  ModeMachine d = duplex(Role::Backup);
  EXPECT_EQ(d.on_peer_unauthenticated(10), Action::None);
}

TEST(ModeMachine, starting_hellos_refused_while_the_peer_is_heard_refuses) {
  ModeMachine m = starting(Role::Backup);
  EXPECT_EQ(m.on_peer_hellos_refused(5), Action::None);  // nothing heard yet: a stranger's bytes
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Simplex), kT0), Action::None);
  EXPECT_EQ(m.on_peer_hellos_refused(2), Action::None);
  EXPECT_EQ(m.on_peer_hellos_refused(3), Action::Refuse);
  EXPECT_TRUE(m.stopped());
  EXPECT_NE(m.refuse_reason().find("it runs another release of understudy"), std::string::npos);
  ModeMachine d = duplex(Role::Backup);
  EXPECT_EQ(d.on_peer_hellos_refused(10), Action::None);
}

TEST(ModeMachine, starting_same_role_refuses) {
  ModeMachine m = starting(Role::Primary);
  EXPECT_EQ(m.on_heartbeat(PeerView{Role::Primary, Mode::Starting, 7}, kT0), Action::Refuse);
  EXPECT_NE(m.refuse_reason().find("both nodes are configured as primary"), std::string::npos);
  EXPECT_FALSE(m.front());

  ModeMachine b = starting(Role::Backup);
  EXPECT_EQ(b.on_channel_up(PeerView{Role::Backup, Mode::Starting, 7}, kT0), Action::Refuse);
  EXPECT_NE(b.refuse_reason().find("both nodes are configured as backup"), std::string::npos);
  EXPECT_EQ(b.mode(), Mode::Starting);
  EXPECT_EQ(b.on_tick(kT0 + kStartupWait), Action::None);
}

// The peer's shared settings differ (config::settings_mismatch): a pair that disagrees must not
// form, and going simplex later could stand beside a serving peer. Refuse, whatever the peer's
// mode (a survivor that serves alone, or a peer starting with us).
TEST(ModeMachine, starting_peer_config_mismatch_refuses) {
  for (Role role : {Role::Primary, Role::Backup}) {
    for (Mode peer_mode : {Mode::Starting, Mode::Simplex, Mode::Duplex}) {
      LogCapture log;
      ModeMachine m = starting(role);
      EXPECT_EQ(m.on_heartbeat(peer_of(role, peer_mode), kT0 + 10ms), Action::None);
      EXPECT_EQ(m.on_peer_config_mismatch(peer_of(role, peer_mode), kMismatch), Action::Refuse);
      EXPECT_TRUE(m.stopped());
      EXPECT_FALSE(m.front());
      EXPECT_EQ(m.mode(), Mode::Starting);
      EXPECT_EQ(m.refuse_reason(), kMismatch);
      EXPECT_EQ(log.text(), "mode: starting -> stopped (" + kMismatch + ")\n");
      // Stopped: nothing later changes that.
      EXPECT_EQ(m.on_channel_up(peer_of(role, peer_mode), kT0 + 20ms), Action::None);
      EXPECT_EQ(m.on_tick(kT0 + kStartupWait + 1s), Action::None);
      EXPECT_EQ(m.on_peer_config_mismatch(peer_of(role, peer_mode), kMismatch), Action::None);
    }
  }
}

TEST(ModeMachine, starting_timeout_goes_simplex_alone) {
  for (Role role : {Role::Primary, Role::Backup}) {
    ModeMachine m = starting(role);
    EXPECT_EQ(m.on_tick(kT0 + kStartupWait - 1ms), Action::None);
    EXPECT_EQ(m.mode(), Mode::Starting);
    EXPECT_EQ(m.on_tick(kT0 + kStartupWait), Action::EnterSimplexAlone);
    EXPECT_EQ(m.mode(), Mode::Simplex);
    EXPECT_TRUE(m.front());
    EXPECT_FALSE(m.peer_alive());
    EXPECT_EQ(m.failovers(), 0u);  // serving alone from the start is not a failover
    EXPECT_EQ(m.on_tick(kT0 + kStartupWait + 1ms), Action::None);
  }
}

TEST(ModeMachine, starting_channel_down_ignored) {
  ModeMachine m = starting(Role::Backup);
  EXPECT_EQ(m.on_channel_down(kT0 + 5ms), Action::None);
  EXPECT_EQ(m.mode(), Mode::Starting);
  EXPECT_EQ(m.on_channel_up(peer_of(Role::Backup, Mode::Starting), kT0 + 10ms),
            Action::EnterDuplex);
}

// Both nodes up, heartbeats flow, the channel does not come up: the primary goes simplex, the
// backup waits, then refuses once the primary's heartbeats say simplex. Never two fronts.
TEST(ModeMachine, starting_timeout_backup_waits_for_live_primary) {
  ModeMachine p = starting(Role::Primary);
  ModeMachine b = starting(Role::Backup);
  TimePoint t = kT0;
  for (; t < kT0 + kStartupWait; t += kInterval) {
    EXPECT_EQ(p.on_heartbeat(peer_of(Role::Primary, Mode::Starting), t), Action::None);
    EXPECT_EQ(b.on_heartbeat(peer_of(Role::Backup, Mode::Starting), t), Action::None);
  }
  EXPECT_EQ(p.on_tick(t), Action::EnterSimplexAlone);
  EXPECT_EQ(b.on_tick(t), Action::None);
  EXPECT_FALSE(b.front());
  // The primary serves alone now: the backup joins it over the channel, never beside it.
  EXPECT_EQ(b.on_heartbeat(peer_of(Role::Backup, p.mode()), t + 1ms), Action::None);
  EXPECT_EQ(b.on_tick(t + 10ms), Action::None);
  EXPECT_FALSE(b.front());
  EXPECT_TRUE(p.front());
}

TEST(ModeMachine, starting_timeout_backup_goes_alone_once_primary_silent) {
  ModeMachine b = starting(Role::Backup);
  EXPECT_EQ(b.on_heartbeat(peer_of(Role::Backup, Mode::Starting), kT0 + kStartupWait - 1ms),
            Action::None);
  EXPECT_EQ(b.on_tick(kT0 + kStartupWait), Action::None);
  EXPECT_EQ(b.on_tick(kT0 + kStartupWait - 1ms + kTimeout), Action::None);
  EXPECT_EQ(b.on_tick(kT0 + kStartupWait + kTimeout), Action::EnterSimplexAlone);
  EXPECT_TRUE(b.front());
}

// A peer still duplex with our previous incarnation is the front (if backup): a primary that
// restarted must not become a second front; it waits until the peer fails over, then joins it.
TEST(ModeMachine, starting_timeout_primary_waits_for_stale_duplex_peer) {
  ModeMachine p = starting(Role::Primary);
  EXPECT_EQ(p.on_heartbeat(peer_of(Role::Primary, Mode::Duplex), kT0 + kStartupWait - 1ms),
            Action::None);
  EXPECT_EQ(p.on_tick(kT0 + kStartupWait), Action::None);
  EXPECT_EQ(p.on_heartbeat(peer_of(Role::Primary, Mode::Simplex), kT0 + kStartupWait + 5ms),
            Action::None);
  EXPECT_EQ(p.on_heartbeat(peer_of(Role::Primary, Mode::Simplex), kT0 + 2 * kStartupWait - 1ms),
            Action::None);
  EXPECT_EQ(p.on_tick(kT0 + 2 * kStartupWait), Action::None);
  EXPECT_FALSE(p.front());
  EXPECT_EQ(p.on_channel_up(peer_of(Role::Primary, Mode::Simplex), kT0 + 2 * kStartupWait),
            Action::EnterDuplex);
}

// ---- duplex ----

TEST(ModeMachine, duplex_heartbeat_timeout_backup_takes_over) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Duplex), t + kInterval), Action::None);
  t += kInterval;
  EXPECT_EQ(m.on_tick(t + kTimeout), Action::None);  // "more than" the timeout
  EXPECT_TRUE(m.peer_alive());
  EXPECT_EQ(m.on_tick(t + kTimeout + 1ms), Action::TakeOver);
  EXPECT_EQ(m.mode(), Mode::Simplex);
  EXPECT_EQ(m.failovers(), 1u);
  EXPECT_FALSE(m.peer_alive());
  EXPECT_TRUE(m.front());
  EXPECT_FALSE(m.stopped());
}

TEST(ModeMachine, duplex_heartbeat_timeout_primary_peer_lost) {
  TimePoint t;
  ModeMachine m = duplex(Role::Primary, &t);
  EXPECT_FALSE(m.front());
  EXPECT_EQ(m.on_tick(t + kTimeout + 1ms), Action::PeerLost);
  EXPECT_EQ(m.mode(), Mode::Simplex);
  EXPECT_EQ(m.failovers(), 1u);
  EXPECT_TRUE(m.front());
}

TEST(ModeMachine, duplex_heartbeats_keep_alive) {
  for (Role role : {Role::Primary, Role::Backup}) {
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    const TimePoint end = t + 60s;
    TimePoint next_beat = t + kInterval;
    for (; t < end; t += 5ms) {
      if (t >= next_beat) {
        ASSERT_EQ(m.on_heartbeat(peer_of(role, Mode::Duplex), t), Action::None);
        next_beat += kInterval;
      }
      ASSERT_EQ(m.on_tick(t), Action::None);
      ASSERT_TRUE(m.peer_alive());
    }
    EXPECT_EQ(m.mode(), Mode::Duplex);
    EXPECT_EQ(m.failovers(), 0u);
  }
}

TEST(ModeMachine, duplex_peer_restarted_boot_id) {
  TimePoint t;
  ModeMachine b = duplex(Role::Backup, &t);
  EXPECT_EQ(b.on_heartbeat(peer_of(Role::Backup, Mode::Starting, kPeerBoot + 1), t + 20ms),
            Action::TakeOver);
  EXPECT_EQ(b.mode(), Mode::Simplex);
  EXPECT_EQ(b.failovers(), 1u);

  ModeMachine p = duplex(Role::Primary, &t);
  EXPECT_EQ(p.on_heartbeat(peer_of(Role::Primary, Mode::Starting, 99), t + 20ms), Action::PeerLost);
  EXPECT_EQ(p.mode(), Mode::Simplex);
  EXPECT_EQ(p.failovers(), 1u);
}

TEST(ModeMachine, duplex_channel_down_backup_failstop) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  const TimePoint down = t + 50ms;
  EXPECT_EQ(m.on_channel_down(down), Action::None);
  EXPECT_EQ(m.on_channel_down(down + 10ms), Action::None);  // the first one counts
  EXPECT_EQ(m.mode(), Mode::Duplex);
  Action last = Action::None;
  TimePoint next_beat = t + kInterval;
  for (t = down; t <= down + kTimeout + 10ms && last == Action::None; t += 1ms) {
    if (t >= next_beat) {
      ASSERT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Duplex), t), Action::None);
      next_beat += kInterval;
    }
    last = m.on_tick(t);
    if (last == Action::None) {
      ASSERT_LE(t - down, kTimeout);
    }
  }
  EXPECT_EQ(last, Action::FailStop);
  EXPECT_EQ(t - 1ms - down, kTimeout + 1ms);
  EXPECT_TRUE(m.stopped());
  EXPECT_FALSE(m.front());
  EXPECT_EQ(m.failovers(), 0u);
  EXPECT_NE(m.refuse_reason().find("fail-stop"), std::string::npos);
  // Stopped: later heartbeats, silence or channel events change nothing.
  EXPECT_EQ(m.on_tick(t + 10s), Action::None);
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Duplex), t + 10s), Action::None);
  EXPECT_FALSE(m.front());
}

TEST(ModeMachine, duplex_channel_down_then_silence_takes_over) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  const TimePoint last_beat = t + kInterval;
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Duplex), last_beat), Action::None);
  EXPECT_EQ(m.on_channel_down(last_beat + 1ms), Action::None);
  // The primary died: its heartbeats stop, so this is a takeover, not a fail-stop.
  for (t = last_beat + 1ms; t <= last_beat + kTimeout; t += 1ms) {
    ASSERT_EQ(m.on_tick(t), Action::None);
  }
  EXPECT_EQ(m.on_tick(last_beat + kTimeout + 1ms), Action::TakeOver);
  EXPECT_FALSE(m.stopped());
  EXPECT_TRUE(m.front());
  EXPECT_EQ(m.failovers(), 1u);
}

TEST(ModeMachine, duplex_channel_down_primary_waits) {
  TimePoint t;
  ModeMachine m = duplex(Role::Primary, &t);
  EXPECT_EQ(m.on_channel_down(t + 1ms), Action::None);
  for (int i = 1; i <= 50; ++i) {  // heartbeats continue for 5 s: the primary does nothing
    t += kInterval;
    ASSERT_EQ(m.on_heartbeat(peer_of(Role::Primary, Mode::Duplex), t), Action::None);
    ASSERT_EQ(m.on_tick(t + 1ms), Action::None);
  }
  // The backup fail-stopped: its heartbeats stop.
  EXPECT_EQ(m.on_tick(t + kTimeout + 1ms), Action::PeerLost);
  EXPECT_FALSE(m.stopped());
  EXPECT_TRUE(m.front());
}

TEST(ModeMachine, duplex_channel_up_ignored) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  EXPECT_EQ(m.on_channel_down(t + 10ms), Action::None);
  // Coming back does not bring back lost replication: the fail-stop clock keeps running, and the
  // hello does not refresh liveness.
  EXPECT_EQ(m.on_channel_up(peer_of(Role::Backup, Mode::Duplex), t + 20ms), Action::None);
  EXPECT_EQ(m.mode(), Mode::Duplex);
  EXPECT_EQ(m.on_heartbeat(peer_of(Role::Backup, Mode::Duplex), t + 200ms), Action::None);
  EXPECT_EQ(m.on_tick(t + 10ms + kTimeout + 1ms), Action::FailStop);
}

// In duplex a channel up should not happen (a channel that went down stays down); if a peer's
// hello differs anyway, nothing changes: no failover, the fail-stop clock is not touched.
TEST(ModeMachine, duplex_peer_config_mismatch_ignored) {
  for (Role role : {Role::Primary, Role::Backup}) {
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    LogCapture log;
    const bool front = m.front();
    EXPECT_EQ(m.on_peer_config_mismatch(peer_of(role, Mode::Starting, kPeerBoot + 1), kMismatch),
              Action::None);
    EXPECT_EQ(m.mode(), Mode::Duplex);
    EXPECT_EQ(m.front(), front);
    EXPECT_FALSE(m.stopped());
    EXPECT_EQ(m.failovers(), 0u);
    EXPECT_EQ(log.text(), std::string("mode: duplex: not joining the ") + to_string(other(role)) +
                              " (boot 1235): " + kMismatch + "\n");
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Duplex), t + 50ms), Action::None);
    EXPECT_EQ(m.on_tick(t + 60ms), Action::None);
  }
}

// The peer declared us dead and serves alone: only one node may be the front.
TEST(ModeMachine, duplex_peer_simplex_failstops) {
  for (Role role : {Role::Primary, Role::Backup}) {
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), t + 20ms), Action::FailStop);
    EXPECT_TRUE(m.stopped());
    EXPECT_FALSE(m.front());
    EXPECT_EQ(m.failovers(), 0u);
    EXPECT_NE(m.refuse_reason().find("went simplex"), std::string::npos);
  }
}

// ---- simplex ----

// Heartbeats alone never bring a restarted peer back: only its replication channel does.
TEST(ModeMachine, simplex_restarted_peer_heartbeats_only) {
  LogCapture log;
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  const PeerView reborn{Role::Primary, Mode::Starting, 77};
  for (int i = 0; i < 20; ++i) {
    t += kInterval;
    EXPECT_EQ(m.on_heartbeat(reborn, t), Action::None);
    EXPECT_EQ(m.on_channel_down(t), Action::None);
    EXPECT_EQ(m.on_tick(t + 1ms), Action::None);
  }
  EXPECT_EQ(m.mode(), Mode::Simplex);
  EXPECT_TRUE(m.front());
  // Logged once per boot_id.
  const std::string text = log.text();
  size_t count = 0;
  for (size_t pos = text.find("rejoins once its replication channel is up");
       pos != std::string::npos;
       pos = text.find("rejoins once its replication channel is up", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << text;
}

TEST(ModeMachine, simplex_channel_up_restarted_peer_rejoins) {
  for (Role role : {Role::Primary, Role::Backup}) {
    LogCapture log;
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    t += kTimeout + 1ms;
    ASSERT_NE(m.on_tick(t), Action::None);  // failed over
    ASSERT_EQ(m.mode(), Mode::Simplex);
    const PeerView reborn{other(role), Mode::Starting, kPeerBoot + 100};
    EXPECT_EQ(m.on_channel_up(reborn, t + 1s), Action::Rejoin);
    EXPECT_EQ(m.mode(), Mode::Duplex);
    EXPECT_EQ(m.front(), role == Role::Backup);  // the address goes to (or stays with) the backup
    EXPECT_TRUE(m.peer_alive());
    EXPECT_EQ(m.failovers(), 1u);
    EXPECT_NE(log.text().find(std::string("mode: simplex -> duplex (") + to_string(other(role)) +
                              " rejoined, boot 1334)"),
              std::string::npos)
        << log.text();
    // And the pair is whole again: the joiner's death is a failover like any other.
    EXPECT_EQ(m.on_heartbeat(PeerView{other(role), Mode::Duplex, kPeerBoot + 100}, t + 1s + 5ms),
              Action::None);
    EXPECT_EQ(m.on_tick(t + 1s + 5ms + kTimeout + 1ms),
              role == Role::Backup ? Action::TakeOver : Action::PeerLost);
    EXPECT_EQ(m.failovers(), 2u);
  }
}

TEST(ModeMachine, simplex_channel_up_same_incarnation_or_serving_peer_ignored) {
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  // The incarnation this node failed over from: its state is gone.
  EXPECT_EQ(m.on_channel_up(PeerView{Role::Primary, Mode::Starting, kPeerBoot}, t + 1s),
            Action::None);
  // A peer that serves alone too is a split brain, settled by the heartbeat rule.
  EXPECT_EQ(m.on_channel_up(PeerView{Role::Primary, Mode::Simplex, kPeerBoot + 7}, t + 1s),
            Action::None);
  EXPECT_EQ(m.mode(), Mode::Simplex);
}

// A survivor keeps serving untouched when a joiner's config differs (the joiner refuses itself on
// the same comparison): one warning per joiner boot, and a later joiner whose config matches
// still rejoins.
TEST(ModeMachine, simplex_peer_config_mismatch_keeps_serving) {
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  LogCapture log;
  const PeerView joiner{Role::Primary, Mode::Starting, kPeerBoot + 1};
  for (int i = 0; i < 5; ++i) {
    t += kInterval;
    EXPECT_EQ(m.on_peer_config_mismatch(joiner, kMismatch), Action::None);
    EXPECT_EQ(m.on_heartbeat(joiner, t), Action::None);
    EXPECT_EQ(m.on_tick(t + 1ms), Action::None);
  }
  EXPECT_EQ(m.mode(), Mode::Simplex);
  EXPECT_TRUE(m.front());
  EXPECT_FALSE(m.stopped());
  EXPECT_EQ(m.failovers(), 1u);
  const std::string line = "mode: simplex: not joining the primary (boot 1235): " + kMismatch;
  EXPECT_EQ(occurrences(log.text(), line), 1u) << log.text();
  EXPECT_EQ(occurrences(log.text(), "-> "), 0u) << log.text();
  // Nor the note that a heard peer rejoins once its channel is up: this one will not.
  EXPECT_EQ(occurrences(log.text(), "rejoins once"), 0u) << log.text();
  const PeerView fixed{Role::Primary, Mode::Starting, kPeerBoot + 2};
  EXPECT_EQ(m.on_channel_up(fixed, t + 1s), Action::Rejoin);
  EXPECT_EQ(m.mode(), Mode::Duplex);
}

TEST(ModeMachine, simplex_failover_counted_once) {
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  EXPECT_EQ(m.failovers(), 1u);
  for (int i = 0; i < 10; ++i) {
    t += kTimeout * 2;
    EXPECT_EQ(m.on_tick(t), Action::None);
    EXPECT_EQ(m.on_heartbeat(PeerView{Role::Primary, Mode::Duplex, kPeerBoot + 5}, t),
              Action::None);
  }
  EXPECT_EQ(m.failovers(), 1u);
}

// ---- front() in each state for each role ----

TEST(ModeMachine, front_in_each_state) {
  for (Role role : {Role::Primary, Role::Backup}) {
    SCOPED_TRACE(to_string(role));
    EXPECT_EQ(starting(role).front(), false);
    EXPECT_EQ(duplex(role).front(), role == Role::Backup);

    ModeMachine alone = starting(role);
    ASSERT_EQ(alone.on_tick(kT0 + kStartupWait), Action::EnterSimplexAlone);
    EXPECT_TRUE(alone.front());

    TimePoint t;
    ModeMachine failed_over = duplex(role, &t);
    ASSERT_NE(failed_over.on_tick(t + kTimeout + 1ms), Action::None);
    EXPECT_TRUE(failed_over.front());

    ModeMachine refused = starting(role);
    ASSERT_EQ(refused.on_heartbeat(PeerView{role, Mode::Starting, 5}, kT0), Action::Refuse);
    EXPECT_FALSE(refused.front());

    ModeMachine stopped = duplex(role);
    ASSERT_EQ(stopped.on_heartbeat(peer_of(role, Mode::Simplex), kT0 + 20ms), Action::FailStop);
    EXPECT_FALSE(stopped.front());
  }
}

TEST(ModeMachine, action_to_string) {
  EXPECT_STREQ(to_string(Action::None), "none");
  EXPECT_STREQ(to_string(Action::EnterDuplex), "enter-duplex");
  EXPECT_STREQ(to_string(Action::TakeOver), "take-over");
  EXPECT_STREQ(to_string(Action::PeerLost), "peer-lost");
  EXPECT_STREQ(to_string(Action::EnterSimplexAlone), "enter-simplex-alone");
  EXPECT_STREQ(to_string(Action::Refuse), "refuse");
  EXPECT_STREQ(to_string(Action::FailStop), "fail-stop");
  EXPECT_STREQ(to_string(Action::Reannounce), "reannounce");
  EXPECT_STREQ(to_string(Action::HandOver), "hand-over");
  EXPECT_STREQ(to_string(Action::Rejoin), "rejoin");
}

// ---- liveness from replication traffic, split brain ----

TEST(ModeMachine, duplex_peer_traffic_keeps_alive) {
  TimePoint t;
  ModeMachine m = duplex(Role::Backup, &t);
  // No heartbeat for ten timeouts, but replication frames keep coming: no failover.
  for (int i = 0; i < 10; ++i) {
    t += kTimeout / 2;
    m.on_peer_traffic(t);
    EXPECT_EQ(m.on_tick(t + 1ms), Action::None);
  }
  EXPECT_EQ(m.mode(), Mode::Duplex);
  t += kTimeout + 1ms;
  EXPECT_EQ(m.on_tick(t), Action::TakeOver) << "silence of every kind still means death";
}

TEST(ModeMachine, simplex_split_brain_backup_failstops) {
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  // The primary it had declared dead is alive, and serves alone as well.
  EXPECT_EQ(m.on_heartbeat(PeerView{Role::Primary, Mode::Simplex, kPeerBoot}, t + 1ms),
            Action::FailStop);
  EXPECT_TRUE(m.stopped());
  EXPECT_FALSE(m.front());
  EXPECT_NE(m.refuse_reason().find("split brain"), std::string::npos);
}

TEST(ModeMachine, simplex_split_brain_primary_reannounces_once) {
  TimePoint t;
  ModeMachine m = duplex(Role::Primary, &t);
  t += kTimeout + 1ms;
  ASSERT_EQ(m.on_tick(t), Action::PeerLost);
  const PeerView backup{Role::Backup, Mode::Simplex, kPeerBoot};
  EXPECT_EQ(m.on_heartbeat(backup, t + 1ms), Action::Reannounce);
  EXPECT_EQ(m.on_heartbeat(backup, t + 2ms), Action::None);
  EXPECT_TRUE(m.front());
  EXPECT_FALSE(m.stopped());
  // A restarted backup (another boot) in simplex is not the split-brain partner.
  ModeMachine n = duplex(Role::Primary, &t);
  t += kTimeout + 1ms;
  ASSERT_EQ(n.on_tick(t), Action::PeerLost);
  EXPECT_EQ(n.on_heartbeat(PeerView{Role::Backup, Mode::Simplex, kPeerBoot + 1}, t), Action::None);
}

// ---- planned handover (SIGTERM in duplex) ----

TEST(ModeMachine, duplex_leave_hands_over_and_stops) {
  for (Role role : {Role::Primary, Role::Backup}) {
    LogCapture log;
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    EXPECT_EQ(m.leave(), Action::HandOver);
    EXPECT_TRUE(m.handed_over());
    EXPECT_TRUE(m.stopped());
    EXPECT_FALSE(m.front());  // a backup that leaves no longer answers ARP for the address
    EXPECT_EQ(m.failovers(), 0u);
    EXPECT_NE(log.text().find(std::string("mode: duplex -> stopped (asked to stop: handing over "
                                          "to the ") +
                              to_string(other(role)) + ", boot 1234)"),
              std::string::npos)
        << log.text();
    // Nothing the peer says afterwards moves a node that handed over.
    EXPECT_EQ(m.on_tick(t + kTimeout + 1s), Action::None);
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Simplex), t + 1s), Action::None);
    EXPECT_EQ(m.on_peer_leaving(), Action::None);
    EXPECT_EQ(m.leave(), Action::None);
  }
}

TEST(ModeMachine, starting_leave_just_stops) {
  ModeMachine m = starting(Role::Primary);
  EXPECT_EQ(m.leave(), Action::None);
  EXPECT_FALSE(m.handed_over());
}

TEST(ModeMachine, simplex_leave_just_stops) {
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  EXPECT_EQ(m.leave(), Action::None);
  EXPECT_FALSE(m.handed_over());
  EXPECT_TRUE(m.front());
}

TEST(ModeMachine, duplex_peer_leaving_fails_over_at_once) {
  for (Role role : {Role::Primary, Role::Backup}) {
    LogCapture log;
    TimePoint t;
    ModeMachine m = duplex(role, &t);
    // Well inside the heartbeat timeout: no silence is needed.
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Duplex), t + 1ms), Action::None);
    EXPECT_EQ(m.on_peer_leaving(), role == Role::Backup ? Action::TakeOver : Action::PeerLost);
    EXPECT_EQ(m.mode(), Mode::Simplex);
    EXPECT_TRUE(m.front());
    EXPECT_FALSE(m.peer_alive());
    EXPECT_EQ(m.failovers(), 1u);
    EXPECT_NE(log.text().find(std::string("mode: duplex -> simplex (") + to_string(other(role)) +
                              " handed over (planned stop), boot 1234)"),
              std::string::npos)
        << log.text();
    // The leaver's last heartbeats may still be on their way: they change nothing.
    EXPECT_EQ(m.on_heartbeat(peer_of(role, Mode::Duplex), t + 2ms), Action::None);
    EXPECT_EQ(m.on_tick(t + kTimeout + 1s), Action::None);
    EXPECT_EQ(m.mode(), Mode::Simplex);
    EXPECT_EQ(m.failovers(), 1u);
  }
}

TEST(ModeMachine, starting_and_simplex_peer_leaving_ignored) {
  ModeMachine s = starting(Role::Backup);
  EXPECT_EQ(s.on_peer_leaving(), Action::None);
  EXPECT_EQ(s.mode(), Mode::Starting);
  TimePoint t;
  ModeMachine m = simplex_after_takeover(&t);
  EXPECT_EQ(m.on_peer_leaving(), Action::None);
  EXPECT_EQ(m.failovers(), 1u);
}

}  // namespace
}  // namespace us::node
