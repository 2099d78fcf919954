// Wiring: the adapters (devices, peer socket and channel, control socket, signals, timers) feed
// the cores and carry out what they return. Each piece lives in its own file: node/packet_path
// (the packet layer and its devices), peer/datagram (UDP; node/datagram_socket its adapter),
// peer/replication (channel messages), node/arp_responder, crypto/isn (I3), node/status,
// node/control, node/host, node/layer_settings. act() is the one place where the mode machine's
// actions become calls on the layers.
#include "node/node.hpp"

#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <chrono>
#include <random>
#include <unordered_set>

#include "core/log.hpp"
#include "crypto/isn.hpp"
#include "crypto/key.hpp"
#include "crypto/request_id.hpp"
#include "message/message_layer.hpp"
#include "metrics/server.hpp"
#include "node/arp_responder.hpp"
#include "node/control.hpp"
#include "node/datagram_socket.hpp"
#include "node/fault.hpp"
#include "node/hooks.hpp"
#include "node/host.hpp"
#include "node/layer_settings.hpp"
#include "node/mode_machine.hpp"
#include "node/packet_path.hpp"
#include "node/status.hpp"
#include "packet/packet_layer.hpp"
#include "peer/channel.hpp"
#include "peer/messages.hpp"
#include "peer/replication.hpp"
#include "sys/event_loop.hpp"
#include "sys/netdev.hpp"
#include "sys/service_notify.hpp"

namespace us::node {

using namespace std::chrono_literals;

namespace {
crypto::Key to_key(const std::vector<uint8_t>& v) {
  crypto::Key k{};
  std::copy_n(v.begin(), std::min(v.size(), k.size()), k.begin());
  return k;
}

// How long a stopping node may take to write out its replication channel, and how long a backup
// that handed over keeps passing client packets to the primary while the clients learn its MAC.
constexpr std::chrono::milliseconds kHandoverDrain{2000};
constexpr std::chrono::milliseconds kHandoverGrace{500};
// After a rejoin: how often the connections still unprotected are looked at, and how long one may
// be held at a request boundary (its next request unread) waiting for its socket to be quiet.
constexpr std::chrono::milliseconds kProtectEvery{5};
constexpr std::chrono::milliseconds kHandoverHold{200};

uint64_t make_boot_id(Role role) {
  // Increases across restarts, so a replayed heartbeat of an earlier run is recognisably old. Even
  // on the primary, odd on the backup: two nodes started in the same microsecond still differ (a
  // node refuses a heartbeat or Hello that carries its own boot id).
  auto us = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                      std::chrono::system_clock::now().time_since_epoch())
                                      .count());
  return 2 * us + (role == Role::Backup ? 1 : 0);
}
}  // namespace

struct Node::Impl {
  config::Config cfg;
  Role role;
  uint64_t boot_id = make_boot_id(role);
  sys::EventLoop loop;
  std::optional<Devices> dev;
  sys::Fd sigfd;
  std::optional<crypto::ServerIsn> server_isn;
  std::optional<crypto::RequestIdMac> request_ids;  // node.request_id_header set
  std::optional<DatagramSocket> udp;
  std::optional<ArpResponder> arp;
  FaultHook fault_point = [](std::string_view point) { fault::hit(point); };
  std::optional<peer::Replication> replication;
  std::optional<PacketPath> packets;
  packet::PacketLayer* pl = nullptr;  // packets->layer()
  std::unique_ptr<peer::Channel> channel;
  std::optional<peer::ChannelLink> channel_link;
  std::unique_ptr<message::MessageLayer> ml;  // after what it sends through: destroyed first
  std::unique_ptr<ModeMachine> mm;
  ControlServer control{loop, [this](const nlohmann::json& req, const ControlServer::ReplyNow& r) {
                          return answer_command(
                              req, r, [this] { return status(); },
                              [this] {
                                packets->reset_timing();
                                ml->reset_timing();
                              });
                        }};
  // Built only with [metrics] listen (docs/METRICS.md).
  std::optional<metrics::Server> metrics_server;
  uint64_t takeovers = 0, peer_losses = 0, rejoins = 0;
  std::vector<uint8_t> rx;
  int exit_code = 0;
  sys::TimePoint started = sys::Clock::now();
  sys::TimePoint last_heartbeat_sent{};
  sys::TimePoint last_expire{};
  uint64_t arp_replies = 0, garps = 0;
  // Connections the peer refused to adopt: not offered again (it would refuse again).
  std::unordered_set<ConnKey, ConnKeyHash> refused_keys;
  std::function<void()> ticker;
  std::function<void()> protector;  // after a rejoin, while connections are unprotected
  bool protecting = false;
  // systemd's Type=notify (inactive without $NOTIFY_SOCKET): READY, STATUS, STOPPING, WATCHDOG.
  sys::ServiceNotify notify = sys::ServiceNotify::from_environment(role);
  std::function<void()> watchdog;
  // hooks.on_front / hooks.on_alone: events to the hook runner (node/hooks.hpp); inactive if unset.
  hooks::Notifier hooks;

  explicit Impl(config::Config c) : cfg(std::move(c)), role(cfg.node.role), rx(65536) {}

  Result<Ok, std::string> init();
  void on_udp(bool drain = false);
  void on_datagram(const peer::Datagram& d, sys::TimePoint now);
  void on_arp();
  void tick();
  void send_heartbeat();
  void act(Action a);
  void announce();
  void hand_over();
  size_t protect_again();  // the connections still unprotected
  void adopt(const Adoption& a);
  Role peer_role() const { return role == Role::Primary ? Role::Backup : Role::Primary; }
  StatusInputs status_inputs() const;
  nlohmann::json status() const { return status_json(status_inputs()); }
  std::string metrics_text() const;
};

Result<Ok, std::string> Node::Impl::init() {
  // First: the runner is spawned while the daemon holds nothing it should not inherit.
  auto runner = hooks::Notifier::start(cfg);
  if (!runner) return Err{runner.error()};
  hooks = std::move(*runner);
  fault::set_interface(cfg.service.interface);
  if (auto f = fault::arm_from_environment(); !f) return f;
  raise_descriptor_limit();
  crypto::Key master = to_key(cfg.peer.key);
  server_isn.emplace(master, cfg.service.advertised);
  udp.emplace(master, role, cfg.node.address, cfg.peer.address, cfg.peer.port, boot_id);

  auto d = open_devices(cfg);
  if (!d) return Err{d.error()};
  dev.emplace(std::move(*d));
  arp.emplace(cfg.service.advertised.ip, dev->link.mac);

  peer::Replication::Handlers rh;
  if (role == Role::Primary)
    rh.has = [this](const ConnKey& k, const HasReport& h) {
      pl->on_backup_has(k, h, sys::Clock::now());
    };
  rh.message = [this](const peer::ConnMessage& m) { ml->on_peer_message(m); };
  rh.leaving = [this] { act(mm->on_peer_leaving()); };
  rh.adopt = [this](const Adoption& a) { adopt(a); };
  rh.adopted = [this](const ConnKey& k) { pl->adoption_confirmed(k); };
  rh.adopt_refused = [this](const ConnKey& k) {
    log::warn({.event = "adopt_refused", .conn = k, .peer = to_string(peer_role())},
              "node: the {} refused connection {}: it stays unprotected until it ends",
              to_string(peer_role()), k.to_string());
    pl->unprotect(k, sys::Clock::now());
    ml->adoption_refused(k);
    refused_keys.insert(k);
  };
  replication.emplace(std::move(rh));

  packet::Settings ps = packet_settings(cfg);
  ps.mode = [this] { return mm->mode(); };
  ps.server_isn = [this](const ConnKey& k, uint8_t offer) { return (*server_isn)(k, offer); };
  ps.fake_start = std::random_device{}();
  packets.emplace(ps,
                  PacketPath::Ports{dev->tap, dev->raw, dev->tun, *udp, *replication,
                                    dev->lan_sender ? &*dev->lan_sender : nullptr,
                                    dev->next_hops ? &*dev->next_hops : nullptr},
                  fault_point);
  pl = &packets->layer();

  message::Settings ms = message_settings(cfg);
  ms.mode = [this] { return mm->mode(); };
  ms.fault = fault_point;
  switch (cfg.node.client_address) {
    case config::ClientAddress::None:
      ms.client_address = message::Settings::ClientAddress::None;
      break;
    case config::ClientAddress::XForwardedFor:
      ms.client_address = message::Settings::ClientAddress::XForwardedFor;
      break;
    case config::ClientAddress::ProxyV2:
      ms.client_address = message::Settings::ClientAddress::ProxyV2;
      break;
  }
  ms.request_id_header = cfg.node.request_id_header;
  if (!cfg.node.request_id_header.empty()) {
    request_ids.emplace(master);
    ms.request_id = [this](const ConnKey& k, wire::SeqNum start, uint64_t index) {
      return (*request_ids)(k, start, index);
    };
  }
  ms.advertised = cfg.service.advertised;
  ml = std::make_unique<message::MessageLayer>(loop, *packets, *replication, ms);
  if (auto s = ml->start(); !s) return Err{"message layer: " + s.error()};

  mm = std::make_unique<ModeMachine>(role, std::chrono::milliseconds(cfg.heartbeat.timeout_ms),
                                     std::chrono::milliseconds(cfg.node.startup_wait_ms),
                                     sys::Clock::now());
  if (auto u = udp->open(loop, [this] { on_udp(); }); !u) return u;
  peer::ChannelSettings cs{
      role, cfg.node.address, cfg.peer.address, cfg.peer.port, master, boot_id, [this] {
        return mm->mode();
      }};
  cs.shared = config::shared_settings(cfg);
  channel = std::make_unique<peer::Channel>(
      loop, cs,
      peer::Channel::Events{
          [this](const peer::Hello& h) {
            // Before the mode machine hears of the peer: a pair that disagrees never forms.
            if (auto why = config::settings_mismatch(config::shared_settings(cfg), h.settings)) {
              act(mm->on_peer_config_mismatch({h.role, h.mode, h.boot_id}, *why));
              return false;
            }
            act(mm->on_channel_up({h.role, h.mode, h.boot_id}, sys::Clock::now()));
            return true;
          },
          [this](peer::Type type, std::span<const uint8_t> p) {
            mm->on_peer_traffic(sys::Clock::now());
            replication->on_frame(type, p);
          },
          [this](const std::string&) { act(mm->on_channel_down(sys::Clock::now())); }});
  channel_link.emplace(*channel);
  replication->attach(*channel_link);
  if (auto c = channel->start(); !c) return Err{c.error()};
  if (auto c = control.open(cfg.node.control_socket); !c) return c;
  if (cfg.metrics.listen) {
    metrics_server.emplace(loop, [this] { return metrics_text(); });
    if (auto m = metrics_server->open(*cfg.metrics.listen); !m) return m;
    log::info({.event = "metrics"}, "node: metrics on http://{}/metrics",
              cfg.metrics.listen->to_string());
  }

  sigfd = on_stop_signals(loop, [this] {
    if (mm->handed_over()) return;  // a second signal while handing over changes nothing
    notify.stopping(mm->mode() == Mode::Duplex ? "handing over to the peer" : "signal");
    Action a = mm->leave();
    if (a == Action::None) return loop.stop();
    act(a);
  });
  loop.add(dev->tap.ip_fd(), EPOLLIN, [this](uint32_t) {
    if (mm->handed_over()) return packets->forward_lan_to_peer();
    packets->on_lan(sys::Clock::now());
  });
  loop.add(dev->tap.arp_fd(), EPOLLIN, [this](uint32_t) { on_arp(); });
  loop.add(dev->tun.fd(), EPOLLIN, [this](uint32_t) {
    // After a handover this node's kernel must not reach the client any more.
    if (!mm->handed_over()) packets->on_tun(sys::Clock::now());
  });
  fault::before_crash([this] { packets->flush_io(); });
  loop.on_idle([this] {
    packets->flush_io();  // what timers emitted (a takeover's resends, challenge ACKs)
    pl->flush();
    ml->flush();
    channel->flush();
  });
  auto interval = std::chrono::milliseconds(std::max<uint32_t>(1, cfg.heartbeat.interval_ms / 2));
  ticker = [this, interval] {
    tick();
    loop.after(interval, ticker);
  };
  loop.after(0ms, ticker);
  if (auto every = notify.watchdog_every()) {
    watchdog = [this, every = *every] {
      notify.watchdog();
      loop.after(every, watchdog);
    };
    loop.after(0ms, watchdog);
  }
  protector = [this] {
    size_t left = protect_again();
    protecting = mm->mode() == Mode::Duplex && !mm->handed_over() && left > 0;
    if (protecting) loop.after(kProtectEvery, protector);
  };
  log::info({.event = "start", .mode = to_string(mm->mode())},
            "node: {} on {} ({}), advertised {}, server {}, peer {}:{}, boot {}", to_string(role),
            cfg.service.interface, dev->link.mac.to_string(), cfg.service.advertised.to_string(),
            cfg.node.server.to_string(), cfg.peer.address.to_string(), cfg.peer.port, boot_id);
  notify.on_state(mm->mode(), mm->front());
  return Ok{};
}

void Node::Impl::on_udp(bool drain) {
  auto now = sys::Clock::now();
  udp->receive(drain, [&](const peer::Datagram& d) { on_datagram(d, now); });
  packets->flush_io();
  if (mm->mode() == Mode::Starting) {
    act(mm->on_peer_unauthenticated(udp->unauthenticated()));
    if (channel) act(mm->on_peer_hellos_refused(channel->hellos_refused()));
  }
}

void Node::Impl::on_datagram(const peer::Datagram& d, sys::TimePoint now) {
  if (mm->handed_over()) return;  // the peer serves now; nothing of this node's may interfere
  switch (d.type) {
    case peer::Type::Heartbeat:
      // A restarted primary is heard before its channel: a backup serving alone connects now.
      if (mm->mode() == Mode::Simplex && !channel->up()) channel->connect_now();
      return act(
          mm->on_heartbeat({d.heartbeat->role, d.heartbeat->mode, d.heartbeat->boot_id}, now));
    case peer::Type::Relay:
      return packets->on_relay(d.payload, now);
    case peer::Type::Stray:
      return packets->on_stray(d.payload, now);
    default:
      return;  // peer::Datagrams passes no other type
  }
}

void Node::Impl::on_arp() {
  for (int i = 0; i < 64; ++i) {
    auto frame = dev->tap.recv_arp(rx);
    if (frame.empty()) return;
    if (auto reply = arp->reply_to(frame, mm->front())) {
      dev->tap.send_arp_frame(*reply);
      ++arp_replies;
    }
  }
}

void Node::Impl::announce() {
  // Gratuitous ARP, repeated: one may be lost, and a client that kept the old owner's MAC would
  // send to a dead host.
  auto frame = arp->announcement();
  dev->tap.send_arp_frame(frame);
  ++garps;
  for (auto delay : {20ms, 100ms, 500ms}) {
    loop.after(delay, [this, frame] {
      if (mm->front()) {
        dev->tap.send_arp_frame(frame);
        ++garps;
      }
    });
  }
  log::info({.event = "front", .mode = to_string(mm->mode())},
            "node: front for {}: gratuitous ARP sent", cfg.service.advertised.ip.to_string());
}

void Node::Impl::send_heartbeat() {
  std::vector<uint8_t> hb;
  peer::encode(hb, peer::Heartbeat{role, mm->mode(), boot_id});
  udp->send(peer::Type::Heartbeat, hb);
}

void Node::Impl::tick() {
  if (mm->handed_over()) return;  // no heartbeats: the peer already serves alone
  // Before judging the peer's liveness, take in what already arrived: a long turn of the loop
  // must not turn queued heartbeats into a false failover.
  on_udp(/*drain=*/true);
  channel->pump();
  auto now = sys::Clock::now();
  if (now - last_heartbeat_sent >= std::chrono::milliseconds(cfg.heartbeat.interval_ms)) {
    last_heartbeat_sent = now;
    send_heartbeat();
  }
  act(mm->on_tick(now));
  pl->resend_due(now);
  if (now - last_expire >= 1s) {
    last_expire = now;
    pl->expire(now);
    if (!pl->kernel_syn_ack_known()) pl->probe_kernel();
    ml->sweep();
  }
}

void Node::Impl::act(Action a) {
  auto now = sys::Clock::now();
  // Every mode change returns here (None included); a stopped node says why in stopping() below.
  if (!mm->stopped()) notify.on_state(mm->mode(), mm->front());
  hooks.on_state(mm->mode(), mm->front());
  switch (a) {
    case Action::None:
      return;
    case Action::EnterDuplex:
      if (role == Role::Backup) announce();
      return;
    case Action::EnterSimplexAlone:
      announce();
      return;
    case Action::TakeOver:
      log::warn({.event = "takeover", .mode = "simplex", .peer = "primary"},
                "node: primary lost: taking over {} connection(s)", pl->open_flows());
      ++takeovers;
      announce();
      pl->take_over(now);
      ml->take_over();
      channel->reset("the primary is gone");
      return;
    case Action::PeerLost:
      log::warn({.event = "peer_lost", .mode = "simplex", .peer = "backup"},
                "node: backup lost: serving alone");
      ++peer_losses;
      announce();  // first: the packet layer's probes must be answered to this node
      pl->peer_lost(now);
      ml->peer_lost();
      channel->reset("the backup is gone");
      return;
    case Action::Refuse:
      log::error({.event = "refuse_start", .reason = mm->refuse_reason()},
                 "node: refusing to start: {}", mm->refuse_reason());
      notify.stopping("refused to start: " + mm->refuse_reason());
      exit_code = 3;
      loop.stop();
      return;
    case Action::Reannounce:
      announce();
      return;
    case Action::Rejoin:
      // The joiner knows none of the connections open here: they stay this node's alone until
      // their next request boundary (protect_again() then hands them over) or their end. A
      // primary is no longer the front: the joining backup announces the address.
      ++rejoins;
      pl->mark_unprotected();
      ml->mark_unprotected();
      if (!protecting) {
        protecting = true;
        loop.after(0ms, protector);
      }
      log::warn({.event = "rejoin", .mode = "duplex", .peer = to_string(peer_role())},
                "node: {} rejoined: {} connection(s) unprotected until their next request "
                "boundary; new ones are protected",
                to_string(peer_role()), ml->unprotected_connections());
      return;
    case Action::HandOver:
      hand_over();
      return;
    case Action::FailStop:
      // A primary that has not heard this node serve alone yet would never learn of the split
      // brain (so never announce the address again): tell it, with a few copies against loss.
      if (role == Role::Backup)
        for (int i = 0; i < 3; ++i) send_heartbeat();
      log::critical({.event = "fail_stop", .reason = mm->refuse_reason()}, "node: fail-stop: {}",
                    mm->refuse_reason());
      notify.stopping("fail-stop: " + mm->refuse_reason());
      exit_code = 4;
      loop.stop();
      return;
  }
}

// After a rejoin: each connection this node serves alone is handed to the peer at its next request
// boundary (an idle keep-alive connection at once), so it is protected again (docs/ARCHITECTURE.md,
// "Rejoin"). The Adopt goes on the channel before anything the restarted session replicates.
size_t Node::Impl::protect_again() {
  size_t left = ml->unprotected_connections();  // one walk per tick: it visits every connection
  if (left == 0) refused_keys.clear();
  if (left == 0 || mm->mode() != Mode::Duplex || !channel->up()) return left;
  auto now = sys::Clock::now();
  size_t handed = 0;
  for (auto& h : ml->ready_for_handover(kHandoverHold)) {
    if (refused_keys.contains(h.key)) continue;
    auto a = pl->protect(h.key, h.client_next, h.unread, now);
    if (!a) continue;
    replication->send_adopt(*a);
    ml->protect_again(h.key);
    log::debug({.event = "conn_handover", .conn = h.key, .peer = to_string(peer_role())},
               "node: {} handed to the {} at a request boundary", h.key.to_string(),
               to_string(peer_role()));
    ++handed;
  }
  left -= handed;
  if (handed > 0)
    log::info({.event = "protected_again", .peer = to_string(peer_role())},
              "node: {} connection(s) protected again at a request boundary; {} unprotected",
              handed, left);
  return left;
}

// The joiner's side: the survivor's connection becomes this node's too, or is refused at once.
void Node::Impl::adopt(const Adoption& a) {
  if (mm->mode() == Mode::Duplex) {
    ml->discard(a.key);  // this node's own copy, if it has one: the survivor's state wins
    if (pl->adopt(a, sys::Clock::now())) {
      fault_point("joiner.adopted");
      return;
    }
  }
  log::warn({.event = "adopt_refused", .conn = a.key, .peer = to_string(peer_role())},
            "node: cannot adopt connection {} from the {}", a.key.to_string(),
            to_string(peer_role()));
  replication->send_adopt_refused(a.key);
}

// Planned handover (issue 9, item 4): the peer takes over as after a failure, but without waiting
// for the heartbeat timeout. Everything this node replicated is on the channel before Leaving (it
// is in order), and the channel is written out before the node exits, so the peer has it all.
// This node sends nothing more to the client: its TUN is no longer read, and its kernel's sockets
// close into a TUN nobody reads. A backup owns the address: the primary announces it at once,
// and for kHandoverGrace this node passes the client packets that still reach it to the primary.
void Node::Impl::hand_over() {
  log::info({.event = "handover", .peer = to_string(peer_role())},
            "node: handing over to the {}: {} connection(s)", to_string(peer_role()),
            ml->connections());
  pl->flush();  // coalesced Has and ReplyAck notices first: they precede Leaving on the channel
  ml->flush();
  replication->send_leaving();
  if (!channel->drain(kHandoverDrain))
    log::warn({.event = "handover", .peer = to_string(peer_role())},
              "node: the replication channel did not take everything before the handover");
  exit_code = 0;
  if (role == Role::Primary) return loop.stop();
  loop.after(kHandoverGrace, [this] { loop.stop(); });
}

StatusInputs Node::Impl::status_inputs() const {
  const auto& t = ml->timing();
  auto now = sys::Clock::now();
  auto lag = ml->replication_lag(now);
  return {
      .role = role,
      .mode = mm->mode(),
      .front = mm->front(),
      .peer_alive = mm->peer_alive(),
      .connections = ml->connections(),
      // Handed to the peer but not yet confirmed held there: still this node's alone.
      .connections_unprotected = ml->unprotected_connections() + pl->awaiting_adoption(),
      .flows = pl->open_flows(),
      .syn_cookies_ready = pl->kernel_syn_ack_known(),
      .failovers = mm->failovers(),
      .boot_id = boot_id,
      .advertised = cfg.service.advertised.to_string(),
      .uptime_ms = std::chrono::duration_cast<std::chrono::milliseconds>(now - started).count(),
      .fault_armed = fault::armed(),
      .channel_up = channel->up(),
      .packet = pl->counters(),
      .message = ml->counters(),
      .rejected_frames = channel->rejected(),
      .rejected_datagrams = udp->rejected(),
      .arp_replies = arp_replies,
      .gratuitous_arps = garps,
      .kernel_super_segments = packets->offload().kernel_super_segments,
      .lan_super_segments = packets->offload().lan_super_segments,
      .segments_cut = packets->offload().segments_cut,
      .frames_refused = packets->offload().frames_refused,
      .sent_whole = packets->offload().sent_whole,
      .cut_no_next_hop = packets->offload().cut_no_next_hop,
      .whole_refused = packets->offload().whole_refused,
      .hook_events_sent = hooks.sent(),
      .hook_events_dropped = hooks.dropped(),
      .packet_time = packets->packet_time().summary(),
      .request_time = t.request.summary(),
      .server_time = t.server.summary(),
      .replication_time = t.replication.summary(),
      .takeovers = takeovers,
      .peer_losses = peer_losses,
      .rejoins = rejoins,
      .replication_unacked_bytes = lag.bytes,
      .replication_lag_seconds = std::chrono::duration<double>(lag.oldest).count(),
      .replication_queued_bytes = channel->queued(),
  };
}

std::string Node::Impl::metrics_text() const {
  const auto& t = ml->timing();
  return status_metrics(status_inputs(),
                        {packets->packet_time(), t.request, t.server, t.replication});
}

Node::Node(config::Config cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}
Node::~Node() = default;
Result<Ok, std::string> Node::init() {
  return impl_->init();
}
int Node::run() {
  impl_->loop.run();
  impl_->packets->flush_io();  // what the last batch queued (a handover's last relays)
  return impl_->exit_code;
}

}  // namespace us::node
