// Notify hooks (node/hooks.hpp): the event line, which mode changes fire which hook, and the
// runner's scheduler (coalescing, timeouts). The processes themselves: tests/lab/test_hooks.py.
#include "node/hooks.hpp"

#include <gtest/gtest.h>

namespace us::node::hooks {
namespace {

using namespace std::chrono_literals;

const wire::Endpoint kAdvertised{wire::Ipv4Addr(198, 18, 0, 100), 80};
const wire::Ipv4Addr kPeer(198, 18, 0, 11);

Event event(Hook h, Mode m = Mode::Duplex, Role r = Role::Backup) {
  return {h, r, m, kAdvertised, kPeer};
}

// ---- the line

TEST(HookLine, EncodesFiveWords) {
  EXPECT_EQ(encode(event(Hook::Front)), "front backup duplex 198.18.0.100:80 198.18.0.11\n");
  EXPECT_EQ(encode(event(Hook::Alone, Mode::Simplex, Role::Primary)),
            "alone primary simplex 198.18.0.100:80 198.18.0.11\n");
}

TEST(HookLine, RoundTrips) {
  for (Hook h : kHooks)
    for (Mode m : {Mode::Starting, Mode::Duplex, Mode::Simplex})
      for (Role r : {Role::Primary, Role::Backup}) {
        Event e = event(h, m, r);
        auto line = encode(e);
        EXPECT_LE(line.size(), kMaxLine);
        EXPECT_EQ(decode(line), e) << line;
      }
}

TEST(HookLine, AnythingElseRefused) {
  for (const char* bad : {
           "",
           "\n",
           "front backup duplex 198.18.0.100:80 198.18.0.11",      // no newline
           "back backup duplex 198.18.0.100:80 198.18.0.11\n",     // no such hook
           "front master duplex 198.18.0.100:80 198.18.0.11\n",    // no such role
           "front backup solo 198.18.0.100:80 198.18.0.11\n",      // no such mode
           "front backup duplex 198.18.0.100 198.18.0.11\n",       // no port
           "front backup duplex 198.18.0.100:80 198.18.0.11:1\n",  // the peer has no port
           "front backup duplex 198.18.0.100:80\n",                // a word missing
           "front backup duplex 198.18.0.100:80 198.18.0.11 x\n",  // a word too many
           "front  backup duplex 198.18.0.100:80 198.18.0.11\n",   // an empty word
           "front backup duplex 198.18.0.100:80 198.18.0.11 \n",   // trailing space
           "FRONT backup duplex 198.18.0.100:80 198.18.0.11\n",
           "front backup duplex 198.18.0.100:80 198.18.0.11\n\n",
       })
    EXPECT_EQ(decode(bad), std::nullopt) << bad;
  EXPECT_EQ(decode(std::string(kMaxLine + 1, 'a') + "\n"), std::nullopt);
}

// ---- which changes fire which hook (node.cpp calls on_state after every mode-machine step)

TEST(HookTrigger, Starting_BackupEntersDuplex_Front) {
  Trigger t;
  EXPECT_EQ(t.on_state(Mode::Starting, false), std::vector<Hook>{});
  EXPECT_EQ(t.on_state(Mode::Duplex, true), std::vector<Hook>{Hook::Front});
  EXPECT_EQ(t.on_state(Mode::Duplex, true), std::vector<Hook>{});  // every later step: nothing
}

TEST(HookTrigger, Starting_PrimaryEntersDuplex_Nothing) {
  Trigger t;
  EXPECT_EQ(t.on_state(Mode::Duplex, false), std::vector<Hook>{});
}

TEST(HookTrigger, Starting_SimplexAlone_FrontThenAlone) {
  Trigger t;
  EXPECT_EQ(t.on_state(Mode::Simplex, true), (std::vector<Hook>{Hook::Front, Hook::Alone}));
}

TEST(HookTrigger, DuplexBackup_TakeOver_AloneOnly) {
  Trigger t;
  t.on_state(Mode::Duplex, true);
  EXPECT_EQ(t.on_state(Mode::Simplex, true), std::vector<Hook>{Hook::Alone});
}

TEST(HookTrigger, DuplexPrimary_PeerLost_FrontThenAlone) {
  Trigger t;
  t.on_state(Mode::Duplex, false);
  EXPECT_EQ(t.on_state(Mode::Simplex, true), (std::vector<Hook>{Hook::Front, Hook::Alone}));
}

TEST(HookTrigger, SimplexBackup_Rejoin_Nothing) {
  Trigger t;
  t.on_state(Mode::Duplex, true);
  t.on_state(Mode::Simplex, true);
  EXPECT_EQ(t.on_state(Mode::Duplex, true), std::vector<Hook>{});  // stays the front
}

TEST(HookTrigger, SimplexPrimary_Rejoin_NothingThenPeerLostAgain_Both) {
  Trigger t;
  t.on_state(Mode::Simplex, true);
  EXPECT_EQ(t.on_state(Mode::Duplex, false), std::vector<Hook>{});  // the backup is the front
  EXPECT_EQ(t.on_state(Mode::Simplex, true), (std::vector<Hook>{Hook::Front, Hook::Alone}));
}

TEST(HookTrigger, Duplex_Stopped_Nothing) {
  Trigger t;
  t.on_state(Mode::Duplex, true);
  EXPECT_EQ(t.on_state(Mode::Duplex, false), std::vector<Hook>{});  // fail-stop or handover
}

// ---- the runner's scheduler

class HookScheduler : public ::testing::Test {
 protected:
  Scheduler s{1000ms};
  TimePoint t0 = TimePoint{} + 1h;
};

TEST_F(HookScheduler, Idle_Event_StartsAtOnce) {
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.on_event(event(Hook::Front), t0), event(Hook::Front));
  EXPECT_TRUE(s.running(Hook::Front));
  EXPECT_FALSE(s.running(Hook::Alone));
  EXPECT_EQ(s.next_deadline(), t0 + 1000ms);
}

TEST_F(HookScheduler, Running_OtherHook_StartsAtOnce) {
  s.on_event(event(Hook::Front), t0);
  EXPECT_EQ(s.on_event(event(Hook::Alone, Mode::Simplex), t0 + 1ms),
            event(Hook::Alone, Mode::Simplex));
  EXPECT_EQ(s.next_deadline(), t0 + 1000ms);
}

TEST_F(HookScheduler, Running_SameHook_WaitsThenStartsAtExit) {
  s.on_event(event(Hook::Front), t0);
  EXPECT_EQ(s.on_event(event(Hook::Front, Mode::Simplex), t0 + 10ms), std::nullopt);
  EXPECT_EQ(s.on_exit(Hook::Front, t0 + 20ms), event(Hook::Front, Mode::Simplex));
  EXPECT_TRUE(s.running(Hook::Front));
  EXPECT_EQ(s.next_deadline(), t0 + 20ms + 1000ms);  // its own timeout from its own start
  EXPECT_EQ(s.on_exit(Hook::Front, t0 + 30ms), std::nullopt);
  EXPECT_TRUE(s.idle());
  EXPECT_EQ(s.coalesced(), 0u);
}

TEST_F(HookScheduler, Waiting_SameHookAgain_LatestWinsCounted) {
  s.on_event(event(Hook::Front, Mode::Starting), t0);
  s.on_event(event(Hook::Front, Mode::Duplex), t0 + 1ms);
  s.on_event(event(Hook::Front, Mode::Simplex), t0 + 2ms);
  EXPECT_EQ(s.coalesced(), 1u);
  EXPECT_EQ(s.on_exit(Hook::Front, t0 + 3ms), event(Hook::Front, Mode::Simplex));
  EXPECT_EQ(s.on_exit(Hook::Front, t0 + 4ms), std::nullopt);
}

TEST_F(HookScheduler, Running_DeadlinePasses_KilledOnce) {
  s.on_event(event(Hook::Front), t0);
  EXPECT_EQ(s.overdue(t0 + 999ms), std::vector<Hook>{});
  EXPECT_EQ(s.overdue(t0 + 1000ms), std::vector<Hook>{Hook::Front});
  EXPECT_EQ(s.overdue(t0 + 2000ms), std::vector<Hook>{});  // killed already: wait for its exit
  EXPECT_EQ(s.next_deadline(), std::nullopt);
  EXPECT_TRUE(s.running(Hook::Front));
  EXPECT_EQ(s.on_exit(Hook::Front, t0 + 2001ms), std::nullopt);
  EXPECT_TRUE(s.idle());
}

TEST_F(HookScheduler, Killed_WaitingEvent_StartsWithAFreshDeadline) {
  s.on_event(event(Hook::Alone, Mode::Simplex), t0);
  s.on_event(event(Hook::Alone, Mode::Simplex), t0 + 5ms);
  EXPECT_EQ(s.overdue(t0 + 1000ms), std::vector<Hook>{Hook::Alone});
  EXPECT_EQ(s.on_exit(Hook::Alone, t0 + 1001ms), event(Hook::Alone, Mode::Simplex));
  EXPECT_EQ(s.next_deadline(), t0 + 2001ms);
  EXPECT_EQ(s.overdue(t0 + 2000ms), std::vector<Hook>{});
}

}  // namespace
}  // namespace us::node::hooks
