#include "node/node.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>
#include <fstream>

#include "common/histogram.hpp"
#include "crypto/frame_auth.hpp"
#include "crypto/key.hpp"
#include "message/message_layer.hpp"
#include "node/fault.hpp"
#include "node/mode_machine.hpp"
#include "packet/packet_layer.hpp"
#include "peer/channel.hpp"
#include "peer/messages.hpp"
#include "sys/event_loop.hpp"
#include "sys/netdev.hpp"
#include "wire/arp.hpp"
#include "wire/tcp.hpp"

namespace us::node {

using namespace std::chrono_literals;

namespace {
// Relay datagram overhead on the LAN: IP + UDP headers, frame header and tag.
constexpr int kRelayOverhead = 20 + 8 + static_cast<int>(crypto::kFrameHeader + crypto::kFrameTag);

// Whether an IPv4+TCP packet carries payload bytes (fault points aim at data, not handshakes).
bool carries_data(std::span<const uint8_t> p) {
  if (p.size() < 40) return false;
  size_t ihl = static_cast<size_t>(p[0] & 0x0f) * 4;
  size_t total = static_cast<size_t>(p[2]) << 8 | p[3];
  if (p.size() < ihl + 20 || total > p.size()) return false;
  size_t doff = static_cast<size_t>(p[ihl + 12] >> 4) * 4;
  return total > ihl + doff;
}

Role to_role(Role r) {
  return r == Role::Primary ? Role::Primary : Role::Backup;
}

crypto::Key to_key(const std::vector<uint8_t>& v) {
  crypto::Key k{};
  std::copy_n(v.begin(), std::min(v.size(), k.size()), k.begin());
  return k;
}

uint64_t make_boot_id() {
  // Increases across restarts, so a replayed heartbeat of an earlier run is recognisably old.
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}
}  // namespace

struct Node::Impl : packet::Emitter, peer::ConnSender, message::Flows {
  config::Config cfg;
  Role role;
  uint64_t boot_id = make_boot_id();
  sys::EventLoop loop;
  sys::LinkInfo link;
  std::optional<sys::LanTap> tap;
  std::optional<sys::RawSender> raw;
  std::optional<sys::Tun> tun;
  sys::Fd udp, control, sigfd;
  crypto::Key master{};
  crypto::Key isn_key{};
  std::optional<crypto::FrameAuth> dgram_auth;
  uint64_t dgram_counter = 1;
  uint64_t peer_boot = 0, peer_counter = 0;
  std::unique_ptr<packet::PacketLayer> pl;
  std::unique_ptr<message::MessageLayer> ml;
  std::unique_ptr<peer::Channel> channel;
  std::unique_ptr<ModeMachine> mm;
  std::vector<uint8_t> rx, scratch, scratch_has;
  int exit_code = 0;
  sys::TimePoint started = sys::Clock::now();
  sys::TimePoint last_heartbeat_sent{};
  sys::TimePoint last_expire{};
  uint64_t dgram_rejected = 0, arp_replies = 0, garps = 0;
  std::function<void()> ticker;
  Histogram packet_time;  // per packet through the packet layer, microseconds

  explicit Impl(config::Config c) : cfg(std::move(c)), role(to_role(cfg.node.role)), rx(65536) {}

  // --- Emitter -------------------------------------------------------------------------------
  void to_kernel(std::span<const uint8_t> p) override { tun->write(p); }
  void to_client(std::span<const uint8_t> p) override { raw->send(p); }
  void to_primary(std::span<const uint8_t> p) override {
    if (carries_data(p)) fault::hit("backup.before_relay");
    send_datagram(peer::Type::Relay, p);
  }
  void to_front(std::span<const uint8_t> p) override { send_datagram(peer::Type::Stray, p); }
  void backup_has(const ConnKey& key, const HasReport& r) override {
    scratch_has.clear();
    peer::encode_has_extra(scratch_has, r);
    send_conn({peer::Type::Has, key, r.has.raw(), 0, scratch_has});
  }
  // --- ConnSender ----------------------------------------------------------------------------
  void send(const peer::ConnMessage& m) override { send_conn(m); }
  // --- Flows ---------------------------------------------------------------------------------
  std::optional<ConnKey> key_for(const wire::Endpoint& fake) const override {
    const packet::Flow* f = pl->find_by_fake(fake);
    return f ? std::optional<ConnKey>(f->key) : std::nullopt;
  }
  void local_has(const wire::Endpoint& fake, wire::SeqNum seq) override {
    pl->note_local_has(fake, seq);
  }

  void send_conn(const peer::ConnMessage& m) {
    if (!channel || !channel->up()) return;
    scratch.clear();
    peer::encode(scratch, m);
    channel->send(m.type, scratch);
  }

  void send_datagram(peer::Type type, std::span<const uint8_t> payload) {
    std::vector<uint8_t> frame;
    frame.reserve(payload.size() + crypto::kFrameHeader + crypto::kFrameTag);
    dgram_auth->seal(frame, static_cast<uint8_t>(type), dgram_counter++, payload);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(cfg.peer.address.v);
    to.sin_port = htons(cfg.peer.port);
    ::sendto(udp.get(), frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  }

  uint32_t server_isn(const ConnKey& k) const {
    uint8_t msg[16];
    auto put32 = [&](int at, uint32_t v) {
      for (int i = 0; i < 4; ++i) msg[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
    };
    put32(0, k.ip.v);
    put32(4, k.port);
    put32(8, k.isn);
    put32(12, cfg.service.advertised.ip.v ^ cfg.service.advertised.port);
    uint8_t mac[32];
    unsigned len = 0;
    HMAC(EVP_sha256(), isn_key.data(), static_cast<int>(isn_key.size()), msg, sizeof msg, mac,
         &len);
    return (uint32_t{mac[0]} << 24) | (uint32_t{mac[1]} << 16) | (uint32_t{mac[2]} << 8) | mac[3];
  }

  Result<Ok, std::string> init();
  Result<Ok, std::string> open_udp();
  Result<Ok, std::string> open_control();
  void on_udp(bool drain = false);
  void on_lan();
  void on_arp();
  void on_tun();
  void on_control();
  nlohmann::json control_reply(const std::string& line, int fd);
  void on_channel_message(peer::Type type, std::span<const uint8_t> payload);
  void tick();
  void send_heartbeat();
  void act(Action a);
  void announce();
  nlohmann::json status() const;
};

Result<Ok, std::string> Node::Impl::init() {
  fault::set_interface(cfg.service.interface);
  if (const char* spec = std::getenv("UNDERSTUDY_FAULT"); spec && *spec) {
    if (!fault::arm_from_spec(spec))
      return Err{std::string("UNDERSTUDY_FAULT: expected point[:nth], got ") + spec};
  }
  // Two descriptors per client connection on the serving node: raise the soft limit to the hard
  // one.
  rlimit nofile{};
  if (::getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &nofile);
  }
  master = to_key(cfg.peer.key);
  isn_key = crypto::derive_key(master, "understudy isn v1");
  dgram_auth.emplace(crypto::derive_key(master, "understudy datagram v1"));

  auto li = sys::link_info(cfg.service.interface);
  if (!li) return Err{"service.interface: " + li.error()};
  link = *li;
  auto offloads = sys::enabled_offloads(cfg.service.interface);
  if (!offloads.empty()) {
    std::string list;
    for (auto& o : offloads) list += (list.empty() ? "" : ", ") + o;
    return Err{"service.interface: " + cfg.service.interface + " has offloads on (" + list +
               "): the packet layer needs whole, checksummed packets; run: ethtool -K " +
               cfg.service.interface + " tx off tso off gso off sg off gro off"};
  }
  if (cfg.tun.mtu + kRelayOverhead > link.mtu)
    return Err{"tun.mtu: " + std::to_string(cfg.tun.mtu) + " + relay overhead " +
               std::to_string(kRelayOverhead) + " exceeds the MTU " + std::to_string(link.mtu) +
               " of " + cfg.service.interface};
  {
    std::ifstream fwd("/proc/sys/net/ipv4/ip_forward");
    int v = 0;
    if (fwd >> v && v != 0)
      return Err{
          "net.ipv4.ip_forward is 1: the kernel would forward the advertised address's "
          "traffic itself; set it to 0"};
  }
  auto t = sys::LanTap::open(link, cfg.service.advertised);
  if (!t) return Err{t.error()};
  tap.emplace(std::move(*t));
  auto r = sys::RawSender::open();
  if (!r) return Err{r.error()};
  raw.emplace(std::move(*r));
  auto tn = sys::Tun::open(cfg.tun.name, cfg.tun.address, cfg.tun.prefix, cfg.tun.mtu);
  if (!tn) return Err{"tun: " + tn.error()};
  tun.emplace(std::move(*tn));

  packet::Settings ps;
  ps.role = role;
  ps.mode = [this] { return mm->mode(); };
  ps.advertised = cfg.service.advertised;
  ps.listen = {cfg.tun.address, cfg.service.advertised.port};
  // Made-up client addresses: the TUN subnet above its own address.
  ps.fake_first = wire::Ipv4Addr(cfg.tun.address.v + 256);
  uint32_t size = cfg.tun.prefix >= 32 ? 1 : (uint32_t{1} << (32 - cfg.tun.prefix));
  ps.fake_count = size > 512 ? size - 512 : 1;
  ps.server_isn = [this](const ConnKey& k) { return server_isn(k); };
  ps.max_flows = static_cast<size_t>(cfg.limits.max_connections);
  pl = std::make_unique<packet::PacketLayer>(ps, *this);

  message::Settings ms;
  ms.role = role;
  ms.mode = [this] { return mm->mode(); };
  ms.listen = ps.listen;
  ms.server = cfg.node.server;
  ms.window = static_cast<size_t>(cfg.limits.replication_window_bytes);
  ms.max_connections = static_cast<size_t>(cfg.limits.max_connections);
  ms.cache_limit = cfg.limits.request_cache_bytes;
  ms.idle_timeout = std::chrono::milliseconds(cfg.limits.idle_timeout_ms);
  ms.fault = [](std::string_view point) { fault::hit(point); };
  ml = std::make_unique<message::MessageLayer>(loop, *this, *this, ms);
  if (auto s = ml->start(); !s) return Err{"message layer: " + s.error()};

  mm = std::make_unique<ModeMachine>(role, std::chrono::milliseconds(cfg.heartbeat.timeout_ms),
                                     std::chrono::milliseconds(cfg.node.startup_wait_ms),
                                     sys::Clock::now());
  if (auto u = open_udp(); !u) return u;
  peer::ChannelSettings cs{
      role, cfg.node.address, cfg.peer.address, cfg.peer.port, master, boot_id, [this] {
        return mm->mode();
      }};
  channel = std::make_unique<peer::Channel>(
      loop, cs,
      peer::Channel::Events{
          [this](const peer::Hello& h) {
            act(mm->on_channel_up({h.role, h.mode, h.boot_id}, sys::Clock::now()));
          },
          [this](peer::Type type, std::span<const uint8_t> p) { on_channel_message(type, p); },
          [this](const std::string&) { act(mm->on_channel_down(sys::Clock::now())); }});
  if (auto c = channel->start(); !c) return Err{c.error()};
  if (auto c = open_control(); !c) return c;

  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  sigfd.reset(::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC));
  loop.add(sigfd.get(), EPOLLIN, [this](uint32_t) {
    signalfd_siginfo si{};
    if (::read(sigfd.get(), &si, sizeof si) > 0)
      spdlog::info("node: signal {}: stopping", si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
    loop.stop();
  });
  loop.add(tap->ip_fd(), EPOLLIN, [this](uint32_t) { on_lan(); });
  loop.add(tap->arp_fd(), EPOLLIN, [this](uint32_t) { on_arp(); });
  loop.add(tun->fd(), EPOLLIN, [this](uint32_t) { on_tun(); });
  loop.on_idle([this] {
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
  spdlog::info("node: {} on {} ({}), advertised {}, server {}, peer {}:{}, boot {}",
               to_string(role), cfg.service.interface, link.mac.to_string(),
               cfg.service.advertised.to_string(), cfg.node.server.to_string(),
               cfg.peer.address.to_string(), cfg.peer.port, boot_id);
  return Ok{};
}

Result<Ok, std::string> Node::Impl::open_udp() {
  udp.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!udp) return Err{sys::errno_text("udp socket")};
  int buf = 8 << 20;
  ::setsockopt(udp.get(), SOL_SOCKET, SO_RCVBUFFORCE, &buf, sizeof buf);
  ::setsockopt(udp.get(), SOL_SOCKET, SO_SNDBUFFORCE, &buf, sizeof buf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(cfg.node.address.v);
  a.sin_port = htons(cfg.peer.port);
  if (::bind(udp.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(
        ("node.address: bind " + cfg.node.address.to_string() + ":" + std::to_string(cfg.peer.port))
            .c_str())};
  loop.add(udp.get(), EPOLLIN, [this](uint32_t) { on_udp(); });
  return Ok{};
}

Result<Ok, std::string> Node::Impl::open_control() {
  const auto& path = cfg.node.control_socket;
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  ::unlink(path.c_str());
  control.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::bind(control.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("node.control_socket: bind " + path.string()).c_str())};
  ::chmod(path.c_str(), 0600);
  ::listen(control.get(), 16);
  loop.add(control.get(), EPOLLIN, [this](uint32_t) { on_control(); });
  return Ok{};
}

void Node::Impl::on_lan() {
  auto now = sys::Clock::now();
  for (int i = 0; i < 256; ++i) {
    auto pkt = tap->recv_ip(rx);
    if (pkt.empty()) return;
    auto t0 = sys::Clock::now();
    pl->on_client_packet(pkt, packet::Source::Lan, now);
    packet_time.add(sys::Clock::now() - t0);
  }
}

void Node::Impl::on_tun() {
  auto now = sys::Clock::now();
  for (int i = 0; i < 256; ++i) {
    auto pkt = tun->read(rx);
    if (pkt.empty()) return;
    auto t0 = sys::Clock::now();
    pl->on_kernel_packet(pkt, now);
    packet_time.add(sys::Clock::now() - t0);
  }
}

void Node::Impl::on_arp() {
  for (int i = 0; i < 64; ++i) {
    auto frame = tap->recv_arp(rx);
    if (frame.empty()) return;
    if (frame.size() < wire::kEthernetHeaderLen) continue;
    auto arp = wire::parse_arp(frame.subspan(wire::kEthernetHeaderLen));
    if (!arp || arp->op != wire::arp_op::Request) continue;
    if (arp->target_ip != cfg.service.advertised.ip || !mm->front()) continue;
    if (arp->sender_ip == arp->target_ip) continue;  // someone else's announcement
    wire::ArpRepr reply{wire::arp_op::Reply, link.mac, cfg.service.advertised.ip, arp->sender_mac,
                        arp->sender_ip};
    tap->send_arp_frame(wire::build_arp_frame(arp->sender_mac, link.mac, reply));
    ++arp_replies;
  }
}

void Node::Impl::announce() {
  // Gratuitous ARP (RFC 5227 announcement), repeated: one may be lost, and a client that kept the
  // old owner's MAC would send to a dead host.
  auto frame = wire::build_arp_frame(wire::MacAddr::broadcast(), link.mac,
                                     wire::gratuitous_arp(link.mac, cfg.service.advertised.ip));
  tap->send_arp_frame(frame);
  ++garps;
  for (auto delay : {20ms, 100ms, 500ms}) {
    loop.after(delay, [this, frame] {
      if (mm->front()) {
        tap->send_arp_frame(frame);
        ++garps;
      }
    });
  }
  spdlog::info("node: front for {}: gratuitous ARP sent", cfg.service.advertised.ip.to_string());
}

void Node::Impl::on_udp(bool drain) {
  auto now = sys::Clock::now();
  for (int i = 0; drain || i < 256; ++i) {
    sockaddr_in from{};
    socklen_t len = sizeof from;
    ssize_t n =
        ::recvfrom(udp.get(), rx.data(), rx.size(), 0, reinterpret_cast<sockaddr*>(&from), &len);
    if (n <= 0) return;
    if (ntohl(from.sin_addr.s_addr) != cfg.peer.address.v) {
      ++dgram_rejected;
      continue;
    }
    auto opened = dgram_auth->open({rx.data(), static_cast<size_t>(n)});
    if (!opened) {
      if (dgram_rejected++ % 100 == 0)
        spdlog::warn("peer: rejected an unauthenticated datagram from {} ({}); {} so far",
                     cfg.peer.address.to_string(), crypto::to_string(opened.error()),
                     dgram_rejected);
      continue;
    }
    auto type = static_cast<peer::Type>(opened->type);
    if (type == peer::Type::Heartbeat) {
      auto hb = peer::decode_heartbeat(opened->payload);
      if (!hb) continue;
      // Replayed heartbeats must not keep a dead peer "alive": boot ids and counters only grow.
      if (hb->boot_id < peer_boot ||
          (hb->boot_id == peer_boot && opened->counter <= peer_counter)) {
        ++dgram_rejected;
        continue;
      }
      peer_boot = hb->boot_id;
      peer_counter = opened->counter;
      act(mm->on_heartbeat({hb->role, hb->mode, hb->boot_id}, now));
    } else if (type == peer::Type::Relay) {
      // The payload is a client packet; copy it out, the packet layer rewrites in place.
      std::vector<uint8_t> pkt(opened->payload.begin(), opened->payload.end());
      if (role == Role::Primary && carries_data(pkt)) fault::hit("primary.before_ack");
      auto t0 = sys::Clock::now();
      pl->on_client_packet(pkt, packet::Source::Relay, now);
      packet_time.add(sys::Clock::now() - t0);
    } else if (type == peer::Type::Stray && role == Role::Backup) {
      std::vector<uint8_t> pkt(opened->payload.begin(), opened->payload.end());
      pl->on_client_packet(pkt, packet::Source::Lan, now);
    }
  }
}

void Node::Impl::on_channel_message(peer::Type type, std::span<const uint8_t> payload) {
  mm->on_peer_traffic(sys::Clock::now());
  auto m = peer::decode_conn(type, payload);
  if (!m) {
    spdlog::error("peer: malformed channel message type {}", static_cast<int>(type));
    return;
  }
  if (type == peer::Type::Has) {
    if (role == Role::Primary) {
      auto r = peer::decode_has(*m);
      if (!r) {
        spdlog::error("peer: malformed Has for {}", m->key.to_string());
        return;
      }
      pl->on_backup_has(m->key, *r, sys::Clock::now());
    }
    return;
  }
  ml->on_peer_message(*m);
}

void Node::Impl::send_heartbeat() {
  scratch.clear();
  peer::encode(scratch, peer::Heartbeat{role, mm->mode(), boot_id});
  auto copy = scratch;
  send_datagram(peer::Type::Heartbeat, copy);
}

void Node::Impl::tick() {
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
    ml->sweep();
  }
}

void Node::Impl::act(Action a) {
  auto now = sys::Clock::now();
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
      spdlog::warn("node: primary lost: taking over {} connection(s)", pl->open_flows());
      announce();
      pl->take_over(now);
      ml->take_over();
      return;
    case Action::PeerLost:
      spdlog::warn("node: backup lost: serving alone");
      announce();  // first: the packet layer's probes must be answered to this node
      pl->peer_lost(now);
      ml->peer_lost();
      return;
    case Action::Refuse:
      spdlog::error("node: refusing to start: {}", mm->refuse_reason());
      exit_code = 3;
      loop.stop();
      return;
    case Action::Reannounce:
      announce();
      return;
    case Action::FailStop:
      // A primary that has not heard this node serve alone yet would never learn of the split
      // brain (so never announce the address again): tell it, with a few copies against loss.
      if (role == Role::Backup)
        for (int i = 0; i < 3; ++i) send_heartbeat();
      spdlog::critical("node: fail-stop: {}", mm->refuse_reason());
      exit_code = 4;
      loop.stop();
      return;
  }
}

nlohmann::json summary_json(const Histogram& h) {
  auto s = h.summary();
  return {{"count", s.count}, {"mean", s.mean}, {"p50", s.p50}, {"p99", s.p99}, {"max", s.max}};
}

nlohmann::json Node::Impl::status() const {
  const auto& pc = pl->counters();
  const auto& t = ml->timing();
  const auto& mc = ml->counters();
  return {
      {"role", to_string(role)},
      {"mode", to_string(mm->mode())},
      {"front", mm->front()},
      {"peer", mm->peer_alive() ? "alive" : "dead"},
      {"connections", ml->connections()},
      {"flows", pl->open_flows()},
      {"failovers", mm->failovers()},
      {"boot_id", boot_id},
      {"advertised", cfg.service.advertised.to_string()},
      {"uptime_ms",
       std::chrono::duration_cast<std::chrono::milliseconds>(sys::Clock::now() - started).count()},
      {"fault_armed", fault::armed()},
      {"channel_up", channel->up()},
      {"packet",
       {{"client_packets", pc.client_packets},
        {"relayed", pc.relayed},
        {"to_kernel", pc.to_kernel},
        {"to_client", pc.to_client},
        {"dropped_malformed", pc.dropped_malformed},
        {"dropped_bad_checksum", pc.dropped_bad_checksum},
        {"dropped_unknown_flow", pc.dropped_unknown_flow},
        {"dropped_not_front", pc.dropped_not_front},
        {"sent_to_front", pc.sent_to_front},
        {"dropped_table_full", pc.dropped_table_full},
        {"acks_clamped", pc.acks_clamped},
        {"syn_acks_held", pc.syn_acks_held},
        {"fake_acks", pc.fake_acks},
        {"kernel_acks_clamped", pc.kernel_acks_clamped},
        {"takeover_resends", pc.takeover_resends},
        {"acks_fabricated", pc.acks_fabricated},
        {"retained_sent", pc.retained_sent},
        {"flows_opened", pc.flows_opened}}},
      {"message",
       {{"accepted", mc.accepted},
        {"requests", mc.requests},
        {"replies", mc.replies},
        {"bad_requests", mc.bad_requests},
        {"upstream_errors", mc.upstream_errors},
        {"regenerated", mc.regenerated},
        {"regen_mismatch", mc.regen_mismatch},
        {"aborted", mc.aborted},
        {"protocol_errors", mc.protocol_errors}}},
      {"peer_channel",
       {{"rejected_frames", channel->rejected()}, {"rejected_datagrams", dgram_rejected}}},
      {"arp", {{"replies", arp_replies}, {"gratuitous", garps}}},
      {"timing",
       {{"packet_us", summary_json(packet_time)},
        {"request_us", summary_json(t.request)},
        {"server_us", summary_json(t.server)},
        {"replication_us", summary_json(t.replication)}}},
  };
}

// The control socket never blocks the loop (a stuck admin tool must not delay heartbeats): each
// connection is read as it becomes readable, answered once its line is complete, and closed.
void Node::Impl::on_control() {
  for (;;) {
    int fd = ::accept4(control.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) return;
    auto line = std::make_shared<std::string>();
    auto timer = std::make_shared<sys::EventLoop::TimerId>();
    auto done = [this, fd, timer] {
      loop.cancel(*timer);
      loop.remove(fd);
      ::close(fd);
    };
    *timer = loop.after(2s, done);  // a client that never finishes its line
    loop.add(fd, EPOLLIN, [this, fd, line, done](uint32_t) {
      char buf[512];
      for (;;) {
        ssize_t n = ::read(fd, buf, sizeof buf);
        if (n > 0) {
          line->append(buf, static_cast<size_t>(n));
          if (line->size() > 4096) return done();
          auto nl = line->find('\n');
          if (nl == std::string::npos) continue;
          std::string out = control_reply(line->substr(0, nl), fd).dump() + "\n";
          ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
          return done();
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        return done();
      }
    });
  }
}

nlohmann::json Node::Impl::control_reply(const std::string& line, int fd) {
  auto req = nlohmann::json::parse(line, nullptr, false);
  std::string cmd = req.is_object() && req.contains("cmd") && req["cmd"].is_string()
                        ? req["cmd"].get<std::string>()
                        : "";
  if (cmd == "status") {
    auto reply = status();
    if (req.value("reset_timing", false)) {
      packet_time.reset();
      ml->reset_timing();
    }
    return reply;
  }
  if (cmd == "fault") {
    std::string spec = req.value("point", "");
    if (spec.empty()) {
      fault::arm("", 1);
      return {{"ok", true}, {"armed", ""}};
    }
    if (fault::arm_from_spec(spec)) return {{"ok", true}, {"armed", fault::armed()}};
    return {{"ok", false}, {"error", "expected point[:nth]"}};
  }
  if (cmd == "crash") {
    std::string out = nlohmann::json{{"ok", true}}.dump() + "\n";
    ::send(fd, out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    fault::crash_now("control command crash");
  }
  return {{"ok", false}, {"error", "unknown command; use status, fault, crash"}};
}

Node::Node(config::Config cfg) : impl_(std::make_unique<Impl>(std::move(cfg))) {}
Node::~Node() = default;
Result<Ok, std::string> Node::init() {
  return impl_->init();
}
int Node::run() {
  impl_->loop.run();
  return impl_->exit_code;
}

Result<nlohmann::json, std::string> control_request(const std::string& socket_path,
                                                    const nlohmann::json& request) {
  sys::Fd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, socket_path.c_str(), sizeof a.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    return Err{sys::errno_text(("no node at " + socket_path).c_str())};
  timeval tv{2, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out = request.dump() + "\n";
  if (::write(fd.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size()))
    return Err{sys::errno_text("write")};
  std::string line;
  char ch;
  while (::read(fd.get(), &ch, 1) == 1 && ch != '\n') line.push_back(ch);
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded()) return Err{std::string("no reply from the node")};
  return j;
}

}  // namespace us::node
