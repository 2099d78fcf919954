// The mode machine: which mode this node is in (the paper's section 2: duplex while both servers
// are alive, simplex when one is left) and what the node must do when heartbeats or the replication
// channel say something. No I/O and no clock inside: every event carries `now`, and the result is
// an Action the node carries out (drive the PacketLayer, send a gratuitous ARP, exit). Read
// DESIGN.md section 1 first.
//
//   starting --channel up, peer starting/duplex----------------> duplex
//   starting --startup_wait, no channel (a backup waits while
//              a starting primary is heard)----------------------> simplex
//   starting --channel up, peer simplex (it serves alone)--------> duplex (joined)
//   starting --same role, or the peer's shared config differs---> stopped (Refuse)
//   simplex  --channel up with a restarted (starting) peer------> duplex (Rejoin)
//   duplex   --heartbeat timeout / peer rebooted----------------> simplex
//   duplex   --backup: channel down but heartbeats go on /
//              peer went simplex--------------------------------> stopped (FailStop)
//   duplex   --the peer's Leaving (a planned stop)--------------> simplex
//   duplex   --leave() (SIGTERM)--------------------------------> stopped (HandOver)
//
// "stopped" is not a Mode: the node exits (fail-stop, the paper's "intentional termination
// of a cluster"); mode() keeps the last mode, front() turns false and every later event returns
// None.
#pragma once
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

#include "core/vocabulary.hpp"

namespace us::node {

// What an authenticated heartbeat or the replication channel's hello says about the peer.
struct PeerView {
  Role role;
  Mode mode;
  uint64_t boot_id;  // changes on every start of the peer's daemon
};

enum class Action {
  None,
  EnterDuplex,        // starting -> duplex: PacketLayer::set_mode(Duplex); the backup becomes front
  TakeOver,           // backup, duplex -> simplex: PacketLayer::take_over(), gratuitous ARP
  PeerLost,           // primary, duplex -> simplex: PacketLayer::peer_lost(), gratuitous ARP
  EnterSimplexAlone,  // starting -> simplex, no peer came: serve alone, gratuitous ARP
  Refuse,             // starting: must not serve (see refuse_reason()); exit with an error
  FailStop,           // duplex: stop this node so the peer serves alone (see refuse_reason())
  Reannounce,  // primary, simplex, split brain: announce the address again (the backup stops)
  HandOver,    // duplex, asked to stop: tell the peer (Leaving), which takes over at once; exit 0
  Rejoin,      // simplex -> duplex: a restarted peer joined; open connections stay unprotected
};
const char* to_string(Action);

class ModeMachine {
 public:
  ModeMachine(Role role, std::chrono::milliseconds heartbeat_timeout,
              std::chrono::milliseconds startup_wait, TimePoint start);

  Mode mode() const { return mode_; }
  Role role() const { return role_; }
  // Owns the advertised address: Simplex, or the Backup in Duplex (DESIGN.md section 1). Never
  // after Refuse / FailStop.
  bool front() const;
  // Whether a peer was heard within heartbeat_timeout, as of the last event. False right after a
  // failover (the peer we were duplex with is gone), even if the heartbeat that caused it came from
  // a rebooted peer.
  bool peer_alive() const { return peer_alive_; }
  uint64_t failovers() const { return failovers_; }
  // True after Refuse or FailStop: the node must exit; every later event returns None.
  bool stopped() const { return stopped_; }
  // Why the node stopped; set with Action::Refuse / Action::FailStop, empty otherwise.
  const std::string& refuse_reason() const { return refuse_reason_; }

  // An authenticated heartbeat arrived.
  Action on_heartbeat(const PeerView& peer, TimePoint now);
  // The authenticated replication channel completed its handshake; `peer` is what its hello said.
  Action on_channel_up(const PeerView& peer, TimePoint now);
  // An authenticated frame arrived on the replication channel: the peer is alive.
  void on_peer_traffic(TimePoint now);
  // The replication channel closed or failed.
  Action on_channel_down(TimePoint now);
  // Called every few milliseconds: timeouts fire here.
  Action on_tick(TimePoint now);
  // Starting: datagrams from the peer's address keep failing authentication while none passes.
  // A node that cannot hear its peer would go simplex alone beside it (two fronts): Refuse.
  Action on_peer_unauthenticated(uint64_t count);
  // Starting: the peer's heartbeats pass (same key) but its replication-channel Hellos keep
  // failing authentication (`count` so far): it runs a release whose peer protocol differs.
  // Waiting would leave it serving alone without telling anyone why: Refuse.
  Action on_peer_hellos_refused(uint64_t count);
  // The channel's hello carried shared settings that differ from ours (config::settings_mismatch
  // gave `reason`); the node does not use that channel. Starting: Refuse (a pair that disagrees
  // must not form, and going simplex beside a serving peer would make two fronts). Serving
  // (simplex or duplex): None; nothing changes, one warning per peer boot.
  Action on_peer_config_mismatch(const PeerView& peer, const std::string& reason);
  // The operator asked this node to stop (SIGTERM). In duplex: HandOver, and the node is stopped
  // from here on; otherwise None (nobody to hand over to: the node just stops).
  Action leave();
  // The peer said it stops by plan (Leaving, after everything it replicated): in duplex, fail
  // over now instead of after the heartbeat timeout (TakeOver / PeerLost).
  Action on_peer_leaving();
  // True after HandOver.
  bool handed_over() const { return handed_over_; }

 private:
  // Checks done on every peer message while starting: Refuse, or nullopt to go on.
  std::optional<Action> check_starting_peer(const PeerView& peer, const char* what);
  Action fail_over(std::string reason);
  void note_ignored_peer(const PeerView& peer, const char* what);
  void heard(TimePoint now);
  // The one place the state changes. Logs "mode: A -> B (reason)"; Refuse / FailStop go to
  // "stopped".
  Action transition(Mode next, Action action, std::string reason);

  Role role_;
  std::chrono::milliseconds heartbeat_timeout_;
  std::chrono::milliseconds startup_wait_;
  TimePoint start_;
  Mode mode_ = Mode::Starting;
  bool stopped_ = false;
  bool peer_alive_ = false;
  uint64_t failovers_ = 0;
  std::string refuse_reason_;
  std::optional<TimePoint> last_heard_;   // last heartbeat (or channel up) from a peer
  Mode last_peer_mode_ = Mode::Starting;  // starting: what the last heartbeat said
  bool split_brain_announced_ = false;
  bool handed_over_ = false;
  bool join_wait_logged_ = false;
  std::optional<TimePoint> join_grace_until_;    // joined a simplex peer: its old heartbeats pass
  uint64_t duplex_boot_ = 0;                     // the peer's boot_id when duplex began
  std::optional<TimePoint> channel_down_since_;  // backup, duplex: the replication channel is down
  std::optional<uint64_t> ignored_boot_;         // last peer boot_id logged as unable to rejoin
  std::optional<uint64_t> mismatch_boot_;        // last peer boot_id refused for its config
};

}  // namespace us::node
