#include "node/mode_machine.hpp"

#include <spdlog/spdlog.h>

#include <utility>

#include "core/log.hpp"

namespace us::node {

namespace {

// Enough failed datagrams that a stray one (a restart racing a key rotation) does not count.
constexpr uint64_t kUnauthenticatedToRefuse = 3;

int64_t ms(Clock::duration d) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
}

}  // namespace

const char* to_string(Action a) {
  switch (a) {
    case Action::None:
      return "none";
    case Action::EnterDuplex:
      return "enter-duplex";
    case Action::TakeOver:
      return "take-over";
    case Action::PeerLost:
      return "peer-lost";
    case Action::EnterSimplexAlone:
      return "enter-simplex-alone";
    case Action::Refuse:
      return "refuse";
    case Action::FailStop:
      return "fail-stop";
    case Action::Reannounce:
      return "reannounce";
    case Action::HandOver:
      return "hand-over";
    case Action::Rejoin:
      return "rejoin";
  }
  return "?";
}

ModeMachine::ModeMachine(Role role, std::chrono::milliseconds heartbeat_timeout,
                         std::chrono::milliseconds startup_wait, TimePoint start)
    : role_(role),
      heartbeat_timeout_(heartbeat_timeout),
      startup_wait_(startup_wait),
      start_(start) {}

bool ModeMachine::front() const {
  if (stopped_) return false;
  switch (mode_) {
    case Mode::Starting:
      return false;
    case Mode::Duplex:
      return role_ == Role::Backup;  // DESIGN.md section 1: in duplex the backup is the front
    case Mode::Simplex:
      return true;
  }
  return false;
}

Action ModeMachine::on_heartbeat(const PeerView& peer, TimePoint now) {
  if (stopped_) return Action::None;
  switch (mode_) {
    case Mode::Starting:
      if (auto refused = check_starting_peer(peer, "heartbeat")) return *refused;
      // Heartbeats alone do not make duplex: without the replication channel the backup could not
      // keep the replies it would need after a takeover.
      heard(now);
      last_peer_mode_ = peer.mode;
      return Action::None;

    case Mode::Duplex:
      if (peer.boot_id != duplex_boot_) {
        // A new incarnation lost every cached request and replicated reply: for the connections in
        // flight the peer we were duplex with is dead (paper section 2), so fail over now rather
        // than after the timeout.
        peer_alive_ = false;
        return fail_over(fmt::format("{} restarted: boot {} -> {}, its state is lost",
                                     to_string(peer.role), duplex_boot_, peer.boot_id));
      }
      if (peer.mode == Mode::Simplex && join_grace_until_ && now <= *join_grace_until_) {
        heard(now);  // sent before it took this joiner back
        return Action::None;
      }
      if (peer.mode == Mode::Duplex) join_grace_until_.reset();
      if (peer.mode == Mode::Simplex) {
        // The peer declared us dead (our heartbeats did not reach it) and now serves alone and owns
        // the advertised address. Two fronts would split the clients' connections; the paper's
        // fail-stop clusters are enforced by intentional termination, so this node stops.
        return transition(mode_, Action::FailStop,
                          fmt::format("{} (boot {}) went simplex: it declared us dead; stopping so "
                                      "that one node serves",
                                      to_string(peer.role), peer.boot_id));
      }
      heard(now);
      return Action::None;

    case Mode::Simplex:
      heard(now);
      if (duplex_boot_ != 0 && peer.boot_id == duplex_boot_ && peer.mode == Mode::Simplex) {
        // Split brain: each of the pair declared the other dead (heartbeats lost while both lived)
        // and both serve alone. One front only: the primary keeps the address and the backup
        // stops; it held the same connections, so the primary can serve them all.
        if (role_ == Role::Backup)
          return transition(mode_, Action::FailStop,
                            fmt::format("split brain: primary (boot {}) is alive and serves "
                                        "alone too; stopping so that one node serves",
                                        peer.boot_id));
        if (!split_brain_announced_) {
          split_brain_announced_ = true;
          log::warn({.event = "split_brain", .mode = to_string(mode_), .peer = "backup"},
                    "mode: split brain: backup (boot {}) serves alone too; announcing the "
                    "address again, the backup stops itself",
                    peer.boot_id);
          return Action::Reannounce;
        }
        return Action::None;
      }
      note_ignored_peer(peer, "heartbeat");
      return Action::None;
  }
  return Action::None;
}

void ModeMachine::on_peer_traffic(TimePoint now) {
  // Any authenticated replication frame proves the peer alive: under load a heartbeat may wait
  // behind thousands of relayed packets, and must not be the only evidence.
  if (!stopped_ && mode_ == Mode::Duplex) heard(now);
}

Action ModeMachine::on_channel_up(const PeerView& peer, TimePoint now) {
  if (stopped_) return Action::None;
  switch (mode_) {
    case Mode::Starting:
      if (auto refused = check_starting_peer(peer, "hello")) return *refused;
      // Starting or Duplex: a peer that reached duplex first (its channel_up came before ours).
      // Simplex: a peer that serves alone takes this node back (issue 9: rejoin).
      heard(now);  // the hello counts as a heartbeat
      duplex_boot_ = peer.boot_id;
      channel_down_since_.reset();
      // The peer's heartbeats sent before it took us back still say simplex.
      if (peer.mode == Mode::Simplex) join_grace_until_ = now + heartbeat_timeout_;
      return transition(
          Mode::Duplex, Action::EnterDuplex,
          fmt::format("channel up with {}, boot {}{}", to_string(peer.role), peer.boot_id,
                      peer.mode == Mode::Simplex ? ": joining it (it serves alone)" : ""));

    case Mode::Duplex:
      // Ignored: a channel that went down lost replicated replies; coming back does not restore
      // them, so the backup's fail-stop clock keeps running.
      log::debug({.event = "peer_ignored", .mode = "duplex", .peer = to_string(peer.role)},
                 "mode: duplex: ignoring channel up from {} (boot {})", to_string(peer.role),
                 peer.boot_id);
      return Action::None;

    case Mode::Simplex:
      if (peer.boot_id == duplex_boot_ || peer.mode != Mode::Starting) {
        // The incarnation we failed over from (its state is gone, or it is serving alone too: the
        // split-brain rule on heartbeats settles that), or a peer that is not starting.
        note_ignored_peer(peer, "channel");
        return Action::None;
      }
      // A restarted peer: it knows none of the connections open here, which stay this node's
      // alone (unprotected) until they end; every connection from now on is protected.
      heard(now);
      duplex_boot_ = peer.boot_id;
      channel_down_since_.reset();
      split_brain_announced_ = false;
      ignored_boot_.reset();
      return transition(Mode::Duplex, Action::Rejoin,
                        fmt::format("{} rejoined, boot {}", to_string(peer.role), peer.boot_id));
  }
  return Action::None;
}

Action ModeMachine::on_channel_down(TimePoint now) {
  if (stopped_) return Action::None;
  if (mode_ != Mode::Duplex) return Action::None;
  if (role_ == Role::Primary) {
    // The primary waits for the heartbeat timeout: either the backup died (heartbeats stop) or it
    // fail-stops itself (heartbeats stop too).
    log::info({.event = "channel_down", .mode = "duplex", .peer = "backup"},
              "mode: duplex: replication channel down; waiting for the backup's heartbeats");
    return Action::None;
  }
  if (!channel_down_since_) {
    channel_down_since_ = now;
    log::info({.event = "channel_down", .mode = "duplex", .peer = "primary"},
              "mode: duplex: replication channel down; fail-stop in {} ms if the primary stays "
              "alive",
              heartbeat_timeout_.count());
  }
  return Action::None;
}

Action ModeMachine::on_tick(TimePoint now) {
  if (stopped_) return Action::None;
  if (last_heard_) peer_alive_ = now - *last_heard_ <= heartbeat_timeout_;
  switch (mode_) {
    case Mode::Starting: {
      if (now - start_ < startup_wait_) return Action::None;
      // A peer that serves alone owns the address: this node joins it over the channel, or not
      // at all; going simplex too would make two fronts.
      if (peer_alive_ && last_peer_mode_ == Mode::Simplex) {
        if (!join_wait_logged_) {
          join_wait_logged_ = true;
          const char* peer_role = to_string(role_ == Role::Primary ? Role::Backup : Role::Primary);
          log::warn({.event = "join_wait", .mode = "starting", .peer = peer_role},
                    "mode: starting: the {} serves alone; waiting for the replication channel "
                    "to join it",
                    peer_role);
        }
        return Action::None;
      }
      // A live peer that is not simplex means both nodes are up but the channel is not (yet). If
      // both went simplex alone, both would answer ARP for the advertised address. Tie-break: the
      // backup keeps waiting (the primary goes simplex and the backup then joins it); the primary
      // waits only for a peer still duplex with our previous incarnation, which fails over as
      // soon as it hears our new boot_id.
      if (peer_alive_ && (role_ == Role::Backup || last_peer_mode_ == Mode::Duplex)) {
        return Action::None;
      }
      return transition(
          Mode::Simplex, Action::EnterSimplexAlone,
          fmt::format("no replication channel within the startup wait of {} ms{}",
                      startup_wait_.count(), peer_alive_ ? ", the backup is still starting" : ""));
    }

    case Mode::Duplex:
      // Heartbeats first: silence after the channel went down is a dead peer, not a cut channel.
      if (!peer_alive_) {
        return fail_over(
            fmt::format("no heartbeat from {} for {} ms",
                        to_string(role_ == Role::Primary ? Role::Backup : Role::Primary),
                        ms(now - *last_heard_)));
      }
      if (channel_down_since_ && now - *channel_down_since_ > heartbeat_timeout_) {
        // The primary is alive but cannot replicate to us: we cannot be a backup. Stop, so that the
        // primary's heartbeat timeout makes it take over (paper: "intentional termination").
        return transition(mode_, Action::FailStop,
                          fmt::format("replication channel down for {} ms while the primary's "
                                      "heartbeats continue: fail-stop so the primary serves alone",
                                      ms(now - *channel_down_since_)));
      }
      return Action::None;

    case Mode::Simplex:
      return Action::None;
  }
  return Action::None;
}

Action ModeMachine::on_peer_unauthenticated(uint64_t count) {
  if (stopped_ || mode_ != Mode::Starting || last_heard_ || count < kUnauthenticatedToRefuse)
    return Action::None;
  return transition(mode_, Action::Refuse,
                    fmt::format("the peer's datagrams fail authentication ({} so far, none "
                                "passed): its key differs from ours (peer.key_file), or it is "
                                "configured with our role (node.role)",
                                count));
}

Action ModeMachine::on_peer_hellos_refused(uint64_t count) {
  if (stopped_ || mode_ != Mode::Starting || !last_heard_ || count < kUnauthenticatedToRefuse)
    return Action::None;
  return transition(mode_, Action::Refuse,
                    fmt::format("the peer's heartbeats pass but its replication channel Hello "
                                "fails authentication ({} so far): it runs another release of "
                                "understudy, whose peer protocol differs; run the same release on "
                                "both nodes",
                                count));
}

Action ModeMachine::on_peer_config_mismatch(const PeerView& peer, const std::string& reason) {
  if (stopped_) return Action::None;
  if (mode_ == Mode::Starting) return transition(mode_, Action::Refuse, reason);
  // A survivor keeps serving as it was: the joiner refuses itself on the same comparison.
  if (mismatch_boot_ != peer.boot_id) {
    mismatch_boot_ = peer.boot_id;
    log::warn({.event = "config_mismatch",
               .mode = to_string(mode_),
               .peer = to_string(peer.role),
               .reason = reason},
              "mode: {}: not joining the {} (boot {}): {}", to_string(mode_), to_string(peer.role),
              peer.boot_id, reason);
  }
  return Action::None;
}

Action ModeMachine::leave() {
  if (stopped_ || mode_ != Mode::Duplex) return Action::None;
  handed_over_ = true;
  return transition(
      mode_, Action::HandOver,
      fmt::format("asked to stop: handing over to the {}, boot {}",
                  to_string(role_ == Role::Primary ? Role::Backup : Role::Primary), duplex_boot_));
}

Action ModeMachine::on_peer_leaving() {
  if (stopped_ || mode_ != Mode::Duplex) {
    log::debug({.event = "peer_ignored", .mode = to_string(mode_)},
               "mode: {}: ignoring the peer's Leaving", to_string(mode_));
    return Action::None;
  }
  return fail_over(fmt::format("{} handed over (planned stop), boot {}",
                               to_string(role_ == Role::Primary ? Role::Backup : Role::Primary),
                               duplex_boot_));
}

std::optional<Action> ModeMachine::check_starting_peer(const PeerView& peer, const char* what) {
  if (peer.role == role_) {
    return transition(mode_, Action::Refuse,
                      fmt::format("both nodes are configured as {} ({} from boot {})",
                                  to_string(role_), what, peer.boot_id));
  }
  return std::nullopt;
}

Action ModeMachine::fail_over(std::string reason) {
  ++failovers_;
  peer_alive_ = false;
  channel_down_since_.reset();
  return transition(Mode::Simplex, role_ == Role::Backup ? Action::TakeOver : Action::PeerLost,
                    std::move(reason));
}

void ModeMachine::note_ignored_peer(const PeerView& peer, const char* what) {
  // A peer refused for its config will not rejoin: its warning said so already.
  if (ignored_boot_ == peer.boot_id || mismatch_boot_ == peer.boot_id) return;
  ignored_boot_ = peer.boot_id;
  log::info({.event = "peer_ignored", .mode = "simplex", .peer = to_string(peer.role)},
            "mode: simplex: {} (boot {}, {}) heard ({}); it rejoins once its replication "
            "channel is up",
            to_string(peer.role), peer.boot_id, to_string(peer.mode), what);
}

void ModeMachine::heard(TimePoint now) {
  last_heard_ = now;
  peer_alive_ = true;
}

Action ModeMachine::transition(Mode next, Action action, std::string reason) {
  const bool stop =
      action == Action::Refuse || action == Action::FailStop || action == Action::HandOver;
  const char* from = to_string(mode_);
  const char* to = stop ? "stopped" : to_string(next);
  auto level = spdlog::level::info;
  if (stop && action != Action::HandOver) {
    level = spdlog::level::err;
  } else if (action == Action::TakeOver || action == Action::PeerLost) {
    level = spdlog::level::warn;
  }
  log::at(level, {.event = "mode_change", .mode = to, .reason = reason}, "mode: {} -> {} ({})",
          from, to, reason);
  if (stop) stopped_ = true;
  if (stop && action != Action::HandOver) refuse_reason_ = std::move(reason);
  mode_ = next;
  return action;
}

}  // namespace us::node
