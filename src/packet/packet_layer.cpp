#include "packet/packet_layer.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "core/log.hpp"
#include "packet/syn_offer.hpp"
#include "wire/tcp_options.hpp"

namespace us::packet {

using wire::Endpoint;
using wire::SeqNum;
using wire::SeqOffset;
namespace tf = wire::tcp_flags;

namespace {
// What a SYN offered, as the ISN's low bits carry it (syn_offer.hpp).
SynOffer offer_in(const wire::TcpPacket& syn) {
  auto opts = wire::parse_options(syn.tcp.options());
  return offer_of(opts ? std::optional(*opts) : std::nullopt);
}
// The connection an ACK that returns a SYN cookie completes: its seq is the client's ISN + 1.
ConnKey returned_key(const wire::TcpPacket& ack) {
  return ConnKey{ack.src().ip, ack.src().port, (ack.tcp.seq() - 1).raw()};
}
// Below this a window counts as (nearly) closed: its reopening is worth an ACK of its own.
constexpr uint32_t kSmallWindow = 4 * 1460;
// After a takeover the oldest segment the client has not acknowledged is sent again at doubling
// gaps for kTakeoverResendFor. The first gap is twice the flow's measured keep-to-ACK time,
// within [kTakeoverRtoMin, kTakeoverRto]; with no measurement it is kTakeoverRto, when a fresh
// TCP connection would retransmit (Linux's minimum RTO): 0.2, 0.6, 1.4, 3 s after the takeover.
// Too early costs one duplicate segment, which the client answers with an ACK at once.
constexpr std::chrono::milliseconds kTakeoverRto{200};
constexpr std::chrono::milliseconds kTakeoverRtoMin{10};
constexpr std::chrono::milliseconds kTakeoverResendFor{3000};
// An adopted connection's made-up SYN: addresses tried, and how long its answer may take.
constexpr int kAdoptTries = 4;
constexpr std::chrono::seconds kAdoptTimeout{1};
// Client packets of flows not (yet) adopted, kept in duplex for an Adopt on its way.
constexpr size_t kEarlyPackets = 256;
constexpr std::chrono::milliseconds kEarlyAge{500};
// About the window a fresh Linux connection offers (65535 before its first scaled update).
constexpr uint32_t kFreshWindow = 64 * 1024;
// RFC 5961 section 7: challenge ACKs at most one per flow per half second (Linux's
// tcp_invalid_ratelimit) and this many per second per node, so a flood of guesses cannot make
// the node a traffic source. The per-flow limit comes first: a node-wide count alone is the side
// channel of CVE-2016-5696 (an off-path host counting challenge ACKs learns the 4-tuple).
constexpr std::chrono::milliseconds kChallengeGap{500};
// The kernel probe (probe_kernel): from port 1 of a made-up address, which no client uses.
constexpr uint16_t kProbePort = 1;
constexpr uint32_t kProbeIsn = 0x5eed0001u;
constexpr uint32_t kChallengeAcksPerSecond = 1000;

void apply_report(Flow& f, const HasReport& r) {
  if (!f.backup_has_known || r.has > f.backup_has) f.backup_has = r.has;
  f.backup_has_known = true;
  if (r.right && (!f.backup_right || *r.right > *f.backup_right)) f.backup_right = r.right;
  if (r.right) f.handover_right.reset();  // the backup's own edge gates from now on
}

// RFC 9293 3.10.7.1, a segment for no connection: the reset takes its seq from the segment's ACK
// (so the client accepts it: it is the client's RCV.NXT), or is seq 0 with ACK = SEG.SEQ + SEG.LEN.
std::vector<uint8_t> reset_for(const wire::TcpPacket& p) {
  wire::TcpSegmentSpec spec;
  spec.src = p.dst();
  spec.dst = p.src();
  if (p.tcp.flags() & tf::ACK) {
    spec.seq = p.tcp.ack();
    spec.flags = tf::RST;
  } else {
    spec.seq = SeqNum(0);
    spec.ack = p.tcp.seq() + p.tcp.seg_len();
    spec.flags = tf::RST | tf::ACK;
  }
  return wire::build_tcp_packet(spec);
}
}  // namespace

bool Flow::fully_closed() const {
  if (reset) return true;
  return client_fin && kernel_fin && client_ack_seen && client_acked > *kernel_fin &&
         kernel_rcv_nxt > *client_fin;
}

PacketLayer::PacketLayer(Settings settings, Emitter& emit)
    : s_(std::move(settings)), emit_(emit), next_fake_(s_.fake_start) {}

bool PacketLayer::front() const {
  return mode() == Mode::Simplex || (s_.role == Role::Backup && mode() == Mode::Duplex);
}

void PacketLayer::on_client_packet(std::span<uint8_t> bytes, Source source, TimePoint now) {
  now_ = now;
  ++counters_.client_packets;
  auto parsed = wire::parse_tcp_packet(bytes, /*verify_tcp_checksum=*/true);
  if (!parsed) {
    if (parsed.error() == wire::ParseError::BadChecksum) {
      ++counters_.dropped_bad_checksum;
    } else {
      ++counters_.dropped_malformed;
    }
    SPDLOG_DEBUG("packet: dropped client packet: {}", wire::to_string(parsed.error()));
    return;
  }
  wire::TcpPacket p = *parsed;
  if (p.dst() != s_.advertised) {
    ++counters_.dropped_malformed;
    return;
  }
  Endpoint client = p.src();
  auto it = by_client_.find(client);
  Flow* f = it == by_client_.end() ? nullptr : it->second.get();
  uint8_t fl = p.tcp.flags();
  bool syn = (fl & tf::SYN) && !(fl & tf::ACK) && !(fl & tf::RST);
  // RFC 5961 4.2: a SYN with another ISN starts a new connection only once the old one is closed;
  // on a live flow it is a blind attacker's (or a rebooted client's: it answers the challenge ACK
  // with an exact RST, then its SYN comes again). A new connection is protected whatever the old
  // one was.
  bool new_isn = syn && f && f->key.isn != p.tcp.seq().raw();
  bool replaces = new_isn && (f->closed_at || f->fully_closed());
  // An ACK that no flow here can take may return a SYN cookie (this node's, or the front's):
  // a new connection, perhaps from the port of one this node still holds.
  bool cookie_candidate =
      !syn && (fl & tf::ACK) && !(fl & (tf::SYN | tf::RST)) &&
      (!f || (f->key.isn != (p.tcp.seq() - 1).raw() &&
              (f->closed_at || f->fully_closed() || p.tcp.ack() > sent_bound(*f))));
  bool unprotected = f && f->unprotected && !replaces && !cookie_candidate;
  if (source == Source::Lan) {
    if (!front()) {
      if (s_.role == Role::Primary && mode() == Mode::Duplex) {
        // A stale ARP entry at the client: hand the packet to the front instead of losing it.
        emit_.to_front(p.ip.bytes());
        ++counters_.sent_to_front;
        return;
      }
      ++counters_.dropped_not_front;
      return;
    }
    if (syn && (!f || replaces) && cookie_wanted(client.ip.v)) {
      // Nothing kept, nothing relayed: a spoofed source never returns the cookie.
      if (f) drop_flow(*f);
      send_cookie(p);
      return;
    }
    if (s_.role == Role::Backup && mode() == Mode::Duplex && !unprotected) {
      // Step 2 of the paper: the client's packet, unchanged, to the primary (not for a flow the
      // rejoined primary never saw: this node serves it alone).
      emit_.to_primary(p.ip.bytes());
      ++counters_.relayed;
    }
  } else if (!(s_.role == Role::Primary && mode() == Mode::Duplex)) {
    ++counters_.dropped_not_front;
    return;
  }

  if (cookie_candidate && valid_cookie(p)) {
    if (f) {
      log::info({.event = "conn_replaced", .conn = f->key},
                "packet: {} reuses its port for a new connection; old flow {} dropped",
                client.to_string(), f->key.to_string());
      drop_flow(*f);
    }
    if (flow_from_cookie(p, now)) remember_early(p, now);  // replayed once the kernel answers
    return;
  }
  if (syn) {
    if (new_isn && !replaces) {
      ++counters_.syns_on_live_flow;
      challenge_ack(*f);
      return;
    }
    if (new_isn) {
      log::info({.event = "conn_replaced", .conn = f->key},
                "packet: {} reuses its port for a new connection; old flow {} dropped",
                client.to_string(), f->key.to_string());
      drop_flow(*f);
      f = nullptr;
    }
    if (!f) f = new_flow(p, now);
    if (!f) return;
  } else if (!f || f->adopting) {
    // In duplex this may be a survivor's connection whose Adopt is on its way: kept a moment,
    // so its kernel gets the bytes without waiting for the client's retransmission timer.
    if (mode() == Mode::Duplex || (f && f->from_cookie)) remember_early(p, now);
    if (f) return;
    ++counters_.dropped_unknown_flow;
    // The primary serving alone is the node that keeps serving whatever happens next (after a
    // split brain the backup stops): a connection it does not know is lost (the backup's from a
    // split, or older than this node's boot). Tell the client now, as a closed port would, rather
    // than let it retransmit into silence until its timeout. Never in duplex or starting (the
    // flow may be the peer's), never on a backup (in a split brain the flow may be the primary's,
    // which serves it again once the partition heals), never to a RST.
    if (s_.role == Role::Primary && mode() == Mode::Simplex && !(fl & tf::RST)) {
      emit_.to_client(reset_for(p), 0);
      ++counters_.to_client;
      ++counters_.resets_unknown_flow;
    }
    return;
  }
  if (!syn && !admit(*f, p)) return;
  f->last_seen = now;
  f->last_client = now;
  client_to_kernel(*f, p, syn);
}

// RFC 5961 before a segment changes anything: the flow's ISNs are keyed hashes, so a blind
// attacker knows the 4-tuple at most and guesses the numbers; Linux applies the same checks, but
// only to what reaches its kernel, while this layer acts on client_acked and resets itself.
bool PacketLayer::admit(Flow& f, const wire::TcpPacket& p) {
  uint8_t fl = p.tcp.flags();
  if (fl & tf::RST) {
    SeqNum seq = p.tcp.seq();
    if (rst_exact(f, seq)) return true;
    ++counters_.rst_ignored;
    // RFC 5961 3.2: in the window, a challenge ACK (a client that did reset answers it with an
    // exact RST); outside it, silence.
    SeqNum lo = f.client_nxt, hi = f.client_nxt;
    uint32_t wnd = kFreshWindow;
    if (f.kernel_isn_known) {
      lo = SeqNum::min(lo, f.kernel_rcv_nxt);
      hi = SeqNum::max(hi, f.kernel_rcv_nxt);
      wnd = std::max(wnd, uint32_t{f.kernel_window} << f.window_shift);
    }
    if (seq >= lo && seq < hi + wnd) challenge_ack(f);
    return false;
  }
  if (!(fl & tf::ACK)) return true;
  SeqNum ack = p.tcp.ack();
  // RFC 5961 5.2: an ACK of what was never sent is dropped (Linux drops it, data included). Let
  // through, it would reach the kernel as a fake ACK for bytes the client never got.
  if (ack > sent_bound(f)) {
    ++counters_.acks_beyond_sent;
    return false;
  }
  // Linux drops (and challenges) an ACK more than the largest window the client ever offered
  // below what it acknowledged: no real client sends it.
  uint32_t max_window = std::max<uint32_t>(f.client_max_window, 0xffff);
  if (f.client_ack_seen && ack < f.client_acked - max_window) {
    ++counters_.acks_too_old;
    challenge_ack(f);
    return false;
  }
  return true;
}

// The client's next seq, as any node holding the flow may know it: the end of its highest
// in-order segment, this kernel's ACK number, the ACK this node sent last (the client answers a
// segment or a challenge ACK of a connection it lost with a RST at that number), or on the
// backup what it reported holding (what the primary acknowledges at most).
bool PacketLayer::rst_exact(const Flow& f, SeqNum seq) const {
  return seq == f.client_nxt || (f.kernel_isn_known && seq == f.kernel_rcv_nxt) ||
         (f.ack_sent_known && seq == f.ack_sent) || (f.local_has_known && seq == f.local.has);
}

SeqNum PacketLayer::sent_bound(const Flow& f) const {
  SeqNum bound = f.server_isn + 1;  // the SYN-ACK
  if (f.kernel_isn_known) bound = SeqNum::max(bound, f.kernel_snd_nxt);
  // A backup's kernel may lag the primary's (the fake-ACK case), and after a takeover the client
  // may acknowledge what only the dead primary sent: the primary never sent beyond the window
  // the client offered, and the backup saw every client segment first.
  if (s_.role == Role::Backup && f.client_right) bound = SeqNum::max(bound, *f.client_right);
  return bound;
}

void PacketLayer::challenge_ack(Flow& f) {
  Mode m = effective_mode(f);
  // Only the node that talks to the client for this flow answers: in duplex, the primary.
  if (m == Mode::Starting || (m == Mode::Duplex && s_.role == Role::Backup)) return;
  if (!f.kernel_isn_known || !f.ack_sent_known || f.held_syn_ack) return;
  if (f.last_challenge && now_ - *f.last_challenge < kChallengeGap) {
    ++counters_.challenge_acks_limited;
    return;
  }
  if (now_ - challenge_window_start_ >= std::chrono::seconds(1)) {
    challenge_window_start_ = now_;
    challenge_budget_ = kChallengeAcksPerSecond;
  }
  if (challenge_budget_ == 0) {
    ++counters_.challenge_acks_limited;
    return;
  }
  --challenge_budget_;
  f.last_challenge = now_;
  // Nothing the client was not told already in duplex (I1); alone, what this kernel holds.
  bool gated = m == Mode::Duplex && s_.role == Role::Primary;
  send_ack_to_client(f, gated ? f.ack_sent : SeqNum::max(f.ack_sent, f.kernel_rcv_nxt));
  ++counters_.challenge_acks;
}

void PacketLayer::remember_early(const wire::TcpPacket& p, TimePoint now) {
  while (!early_.empty() &&
         (early_.size() >= kEarlyPackets || now - early_.front().first > kEarlyAge))
    early_.pop_front();
  auto bytes = p.ip.bytes();
  early_.emplace_back(now, std::vector<uint8_t>(bytes.begin(), bytes.end()));
}

void PacketLayer::replay_early(Flow& f) {
  for (auto it = early_.begin(); it != early_.end();) {
    auto parsed = wire::parse_tcp_packet(it->second, /*verify_tcp_checksum=*/false);
    if (!parsed || parsed->src() != f.client) {
      ++it;
      continue;
    }
    wire::TcpPacket p = *parsed;
    client_to_kernel(f, p, /*syn=*/false);
    ++counters_.early_replayed;
    it = early_.erase(it);
  }
}

// A SYN-ACK to a SYN that offered window scaling and SACK: what a cookie may promise.
void PacketLayer::learn_syn_ack(const wire::TcpPacket& syn_ack) {
  auto opts = wire::parse_options(syn_ack.tcp.options());
  if (!opts) return;
  kernel_syn_ack_ = KernelSynAck{syn_ack.tcp.window(), opts->mss.value_or(536), opts->wscale,
                                 opts->sack_permitted};
}

void PacketLayer::probe_kernel() {
  if (kernel_syn_ack_) return;
  for (uint32_t tries = 0; tries < s_.fake_count; ++tries) {
    Endpoint fake{wire::Ipv4Addr(s_.fake_first.v + (next_fake_++ % s_.fake_count)), kProbePort};
    if (by_fake_.contains(fake)) continue;
    probe_ = fake;
    wire::TcpOptions o;
    o.mss = 1460;
    o.wscale = 7;
    o.sack_permitted = true;
    auto opts = wire::encode_options(o);
    wire::TcpSegmentSpec spec;
    spec.src = fake;
    spec.dst = s_.listen;
    spec.seq = SeqNum(kProbeIsn);
    spec.flags = tf::SYN;
    spec.window = 0xffff;
    spec.options = opts;
    emit_.to_kernel(wire::build_tcp_packet(spec));
    ++counters_.to_kernel;
    return;
  }
}

void PacketLayer::on_probe_answer(const wire::TcpPacket& p) {
  uint8_t fl = p.tcp.flags();
  if ((fl & tf::SYN) && (fl & tf::ACK) && p.tcp.ack() == SeqNum(kProbeIsn + 1)) {
    learn_syn_ack(p);
    wire::TcpSegmentSpec rst;
    rst.src = *probe_;
    rst.dst = s_.listen;
    rst.seq = SeqNum(kProbeIsn + 1);
    rst.flags = tf::RST;
    emit_.to_kernel(wire::build_tcp_packet(rst));
    ++counters_.to_kernel;
  }
  probe_.reset();  // anything else (a RST: no listener yet): asked again later
}

bool PacketLayer::cookie_wanted(uint32_t source) const {
  if (!kernel_syn_ack_) return false;
  if (half_open_.size() >= s_.syn_cookie_threshold) return true;
  auto n = half_open_by_source_.find(source);
  return n != half_open_by_source_.end() && n->second >= s_.half_open_per_source;
}

// The SYN-ACK this node's kernel would send (its window, MSS, scale and SACK, as learnt), under
// the ISN every node gives this connection: the client cannot tell it from the kernel's.
void PacketLayer::send_cookie(const wire::TcpPacket& syn) {
  SynOffer offer = offer_in(syn);
  ConnKey key{syn.src().ip, syn.src().port, syn.tcp.seq().raw()};
  const KernelSynAck& k = *kernel_syn_ack_;
  wire::TcpOptions o;
  o.mss = k.mss;
  if (offer.wscale) o.wscale = k.wscale;  // RFC 7323 2.2: only if the client offered it
  o.sack_permitted = offer.sack && k.sack;
  auto encoded = wire::encode_options(o);
  wire::TcpSegmentSpec spec;
  spec.src = s_.advertised;
  spec.dst = syn.src();
  spec.seq = SeqNum(s_.server_isn(key, encode_offer(offer)));
  spec.ack = syn.tcp.seq() + 1;
  spec.flags = tf::SYN | tf::ACK;
  spec.window = k.window;
  spec.options = encoded;
  emit_.to_client(wire::build_tcp_packet(spec), 0);
  ++counters_.to_client;
  ++counters_.syn_cookies_sent;
}

// The ACK's seq is the client's ISN + 1 and its ack our ISN + 1 (also when the handshake's ACK
// was lost and this is the first data): the ISN must be the keyed hash of that connection and the
// offer in its low bits. A blind guess passes once in 2^24 (crypto/isn.hpp).
bool PacketLayer::valid_cookie(const wire::TcpPacket& p) const {
  ConnKey key = returned_key(p);
  uint32_t isn = (p.tcp.ack() - 1).raw();
  return s_.server_isn(key, static_cast<uint8_t>(isn & kOfferMask)) == isn;
}

Flow* PacketLayer::flow_from_cookie(const wire::TcpPacket& p, TimePoint now) {
  ConnKey key = returned_key(p);
  Flow* f = insert_flow(key, p.src(), now);
  if (!f) return nullptr;
  f->server_isn = p.tcp.ack() - 1;
  SynOffer offer = decode_offer(static_cast<uint8_t>(f->server_isn.raw() & kOfferMask));
  f->client_offered_wscale = offer.wscale.has_value();
  f->client_wscale = offer.wscale;
  f->client_mss = offer.mss;
  f->client_sack_ok = offer.sack;
  f->from_cookie = true;
  f->adopting = true;
  f->adopt_started = now;
  if (s_.role == Role::Primary) {
    // The client holds a SYN-ACK already (the front's), and the backup has the SYN: it relayed
    // this ACK, which carries it.
    f->ack_sent_known = true;
    f->ack_sent = f->client_start;
    if (!(f->backup_has_known && f->backup_has > f->client_start)) {
      f->backup_has_known = true;
      f->backup_has = f->client_start;
    }
  }
  ++counters_.syn_cookie_flows;
  if (log::enabled(spdlog::level::debug))
    log::debug({.event = "flow_open", .conn = key},
               "packet: {}: SYN cookie returned; new flow as {}", key.to_string(),
               f->fake.to_string());
  send_made_up_syn(*f);
  return f;
}

// A SYN's flow is half-open until the client's ACK: a spoofed source never sends it. Bounded so
// that a flood cannot take the table from real clients (Linux's SYN queue, without its cookies:
// the kernel behind the TUN uses its own).
Flow* PacketLayer::new_flow(const wire::TcpPacket& syn, TimePoint now) {
  uint32_t source = syn.src().ip.v;
  auto n = half_open_by_source_.find(source);
  if (n != half_open_by_source_.end() && n->second >= s_.half_open_per_source) {
    ++counters_.syns_over_source_cap;
    return nullptr;
  }
  if (!half_open_.empty() &&
      (half_open_.size() >= s_.max_half_open || by_client_.size() >= s_.max_flows)) {
    ++counters_.half_open_evicted;
    forget(*half_open_.front());
  }
  Flow* f = insert_flow(ConnKey{syn.src().ip, syn.src().port, syn.tcp.seq().raw()}, syn.src(), now);
  if (!f) return nullptr;
  f->server_isn = SeqNum(s_.server_isn(f->key, encode_offer(offer_in(syn))));
  f->half_open = true;
  f->half_open_at = half_open_.insert(half_open_.end(), f);
  ++half_open_by_source_[source];
  return f;
}

void PacketLayer::leave_half_open(Flow& f) {
  if (!f.half_open) return;
  f.half_open = false;
  half_open_.erase(f.half_open_at);
  auto n = half_open_by_source_.find(f.client.ip.v);
  if (n != half_open_by_source_.end() && --n->second == 0) half_open_by_source_.erase(n);
}

bool PacketLayer::pick_fake(Flow& f) {
  for (uint32_t tries = 0; tries < s_.fake_count; ++tries) {
    Endpoint fake{wire::Ipv4Addr(s_.fake_first.v + (next_fake_++ % s_.fake_count)), f.client.port};
    if (!by_fake_.contains(fake) && fake != probe_) {
      f.fake = fake;
      return true;
    }
  }
  return false;
}

Flow* PacketLayer::insert_flow(const ConnKey& key, const Endpoint& client, TimePoint now) {
  if (by_client_.size() >= s_.max_flows) {
    ++counters_.dropped_table_full;
    return nullptr;
  }
  auto f = std::make_unique<Flow>();
  f->client = client;
  f->key = key;
  f->client_start = SeqNum(key.isn + 1);
  f->client_nxt = f->client_start;
  if (!pick_fake(*f)) {
    ++counters_.dropped_table_full;
    return nullptr;
  }
  f->last_seen = now;
  f->last_client = now;
  if (auto e = early_has_.find(f->key); e != early_has_.end()) {
    apply_report(*f, e->second.first);
    early_has_.erase(e);
  }
  Flow* raw = f.get();
  by_fake_[raw->fake] = raw;
  by_key_[raw->key] = raw;
  by_client_[raw->client] = std::move(f);
  ++counters_.flows_opened;
  if (log::enabled(spdlog::level::debug))
    log::debug({.event = "flow_open", .conn = raw->key}, "packet: new flow {} as {}",
               raw->key.to_string(), raw->fake.to_string());
  return raw;
}

void PacketLayer::client_to_kernel(Flow& f, wire::TcpPacket& p, bool syn) {
  uint8_t fl = p.tcp.flags();
  if (fl & tf::ACK) {
    SeqNum ack = p.tcp.ack();
    if (!f.client_ack_seen || ack > f.client_acked) {
      f.client_acked = ack;
      f.client_ack_seen = true;
    }
    leave_half_open(f);
    f.client_window = p.tcp.window();
    // The client's window is scaled when both SYNs offered it (Linux kernels always do).
    uint8_t shift = f.client_wscale && f.kernel_isn_known ? *f.client_wscale : 0;
    uint32_t wnd = uint32_t{f.client_window} << shift;
    f.client_max_window = std::max(f.client_max_window, wnd);
    if (!f.client_right || ack + wnd > *f.client_right) f.client_right = ack + wnd;
    std::optional<TimePoint> newest_acked;
    while (!f.retained.empty() && f.retained.front().end <= f.client_acked) {
      newest_acked = f.retained.front().kept_at;
      f.retained.pop_front();
    }
    if (newest_acked) note_kept_to_ack(f, now_ - *newest_acked);
  }
  if (fl & tf::FIN) f.client_fin = p.tcp.seq() + static_cast<uint32_t>(p.tcp.payload().size());
  if (!(fl & tf::RST)) {
    // In order only: a segment beyond a gap does not tell where the client's stream ends.
    SeqNum end = p.tcp.seq() + p.tcp.seg_len();
    if (p.tcp.seq() <= f.client_nxt && end > f.client_nxt) f.client_nxt = end;
  }
  if (fl & tf::RST) {
    f.reset = true;
    if (!f.closed_at) f.closed_at = now_;
  }
  if (syn) {
    auto opts = wire::parse_options(p.tcp.options());
    f.client_offered_wscale = opts && opts->wscale.has_value();
    if (opts) {
      // RFC 7323 2.3: a larger shift is used as 14.
      if (opts->wscale) f.client_wscale = std::min<uint8_t>(*opts->wscale, 14);
      f.client_mss = opts->mss.value_or(536);
      f.client_sack_ok = opts->sack_permitted;
    }
    f.client_max_window = std::max<uint32_t>(f.client_max_window, p.tcp.window());
  }
  // Timestamps are negotiated off (the SYN loses its TS option), so neither kernel's clock ever
  // reaches the client and PAWS cannot reject the backup after a takeover (DESIGN.md section 3).
  wire::strip_timestamps(p.tcp);

  p.set_src(f.fake);
  p.set_dst(s_.listen);
  if (fl & tf::ACK) {
    if (!f.kernel_isn_known) {
      ++counters_.dropped_unknown_flow;
      return;
    }
    SeqNum a = p.tcp.ack();
    // Linux discards a segment, data included, whose ACK covers data it has not sent; when this
    // node's kernel lags the client, acknowledge only what it has sent (the paper's fake-ACK rule).
    if (a > f.kernel_snd_nxt) {
      a = f.kernel_snd_nxt;
      ++counters_.kernel_acks_clamped;
    }
    p.tcp.set_ack(f.kernel_to_client.unapply(a));
    wire::translate_sack(p.tcp, SeqOffset{0u - f.kernel_to_client.v});
    if (!f.have_kernel_ack_given || a > f.kernel_ack_given) {
      f.kernel_ack_given = a;
      f.have_kernel_ack_given = true;
    }
  }
  emit_.to_kernel(p.ip.bytes());
  ++counters_.to_kernel;
}

void PacketLayer::on_kernel_packet(std::span<uint8_t> bytes, TimePoint now, uint16_t segment_size) {
  now_ = now;
  auto parsed = wire::parse_tcp_packet(bytes, /*verify_tcp_checksum=*/false);
  if (!parsed) {
    ++counters_.dropped_kernel_unknown;
    return;
  }
  wire::TcpPacket p = *parsed;
  if (p.src() != s_.listen) {
    ++counters_.dropped_kernel_unknown;
    return;
  }
  if (probe_ && p.dst() == *probe_) return on_probe_answer(p);
  auto it = by_fake_.find(p.dst());
  if (it == by_fake_.end()) {
    ++counters_.dropped_kernel_unknown;
    return;
  }
  Flow& f = *it->second;
  f.last_seen = now;
  if (segment_size) f.segment_size = segment_size;
  kernel_to_client(f, p);
}

void PacketLayer::kernel_to_client(Flow& f, wire::TcpPacket& p) {
  uint8_t fl = p.tcp.flags();
  bool syn_ack = (fl & tf::SYN) && (fl & tf::ACK);
  if (f.adopting && !syn_ack) {
    // Not the listener's answer: a kernel socket of this made-up address pair already exists (a
    // killed predecessor's, closing). Try another address.
    ++counters_.dropped_kernel_unknown;
    if (++f.adopt_tries >= kAdoptTries) return refuse_adoption(f, "no free made-up address");
    by_fake_.erase(f.fake);
    if (!pick_fake(f)) return refuse_adoption(f, "no free made-up address");
    by_fake_[f.fake] = &f;
    send_made_up_syn(f);
    return;
  }
  if (syn_ack && !f.kernel_isn_known) {
    f.kernel_to_client = SeqOffset::between(f.server_isn, p.tcp.seq());
    f.kernel_isn_known = true;
    auto opts = wire::parse_options(p.tcp.options());
    // RFC 7323 2.2: scaling applies only if both SYNs carried the option.
    f.window_shift = (f.client_offered_wscale && opts && opts->wscale) ? *opts->wscale : 0;
    if (!f.adopting && f.client_offered_wscale && f.client_sack_ok) learn_syn_ack(p);
    f.kernel_snd_nxt = f.server_isn;
    f.kernel_rcv_nxt = p.tcp.ack();
    f.kernel_window = static_cast<uint16_t>(p.tcp.window() >> f.window_shift);
  }
  if (!f.kernel_isn_known) {
    ++counters_.dropped_kernel_unknown;
    return;
  }
  SeqNum seq = f.kernel_to_client.apply(p.tcp.seq());
  SeqNum end = seq + p.tcp.seg_len();
  if (end > f.kernel_snd_nxt) f.kernel_snd_nxt = end;
  if (fl & tf::ACK) {
    if (p.tcp.ack() > f.kernel_rcv_nxt) f.kernel_rcv_nxt = p.tcp.ack();
    if (!syn_ack) f.kernel_window = p.tcp.window();
    note_has(f, p.tcp.ack());
    if (s_.role == Role::Backup) note_kernel_window(f, p, syn_ack);
  }
  if (f.adopting) {
    // Only the made-up handshake's answer is expected; nothing of it is the client's.
    if (syn_ack) finish_adoption(f);  // may drop f
    return;
  }
  if (fl & tf::FIN) f.kernel_fin = seq + static_cast<uint32_t>(p.tcp.payload().size());
  // A reset made by the backup's kernel alone never reaches the client and does not end the flow:
  // the primary may still be serving it.
  if ((fl & tf::RST) && !(s_.role == Role::Backup && effective_mode(f) == Mode::Duplex)) {
    f.reset = true;
    if (!f.closed_at) f.closed_at = now_;
  }
  p.tcp.set_seq(seq);
  p.set_src(s_.advertised);
  p.set_dst(f.client);

  // An unprotected flow is never taken over (no peer holds it), so nothing is kept for that.
  if (s_.role == Role::Backup && !f.unprotected && p.tcp.seg_len() > 0 && !(fl & tf::RST))
    retain(f, seq, end, p);
  maybe_fake_ack(f);

  switch (effective_mode(f)) {
    case Mode::Starting:
      return;
    case Mode::Duplex:
      if (s_.role == Role::Backup) return;  // step 9: the backup keeps, the primary sends
      if (syn_ack && !(f.backup_has_known && f.backup_has > SeqNum(f.key.isn))) {
        f.held_syn_ack = std::vector<uint8_t>(p.ip.bytes().begin(), p.ip.bytes().end());
        ++counters_.syn_acks_held;
        return;
      }
      if ((fl & tf::ACK) && !syn_ack) gate(f, p);
      break;
    case Mode::Simplex:
      break;
  }
  if (fl & tf::ACK) {
    if (!f.ack_sent_known || p.tcp.ack() > f.ack_sent) f.ack_sent = p.tcp.ack();
    f.ack_sent_known = true;
    if (!syn_ack) {
      SeqNum right = p.tcp.ack() + (uint32_t{p.tcp.window()} << f.window_shift);
      if (!f.right_sent || right > *f.right_sent) f.right_sent = right;
    }
  }
  emit_.to_client(p.ip.bytes(), f.segment_size);
  ++counters_.to_client;
}

// I1 for what a segment tells the client. ACK: no further than the backup holds. Window: its right
// edge no further than the backup's kernel takes bytes, or the client sends what only the primary
// keeps (chaos seed 2035319265). SACK blocks pass: they are advisory (RFC 2018 lets a receiver
// renege; the client keeps SACKed data until it is acknowledged), and since the backup sees every
// client segment first and its window is respected, they are almost always true for it too.
// Trimming them to what the backup had reported cost the client its fast recovery (chaos seeds
// 602774817, 1487305356).
void PacketLayer::gate(Flow& f, wire::TcpPacket& p) {
  SeqNum allowed = f.backup_has_known ? f.backup_has : SeqNum(f.key.isn + 1);
  SeqNum kernel_right = p.tcp.ack() + (uint32_t{p.tcp.window()} << f.window_shift);
  if (p.tcp.ack() > allowed) {
    p.tcp.set_ack(allowed);
    ++counters_.acks_clamped;
  }
  SeqNum right = window_right(f, kernel_right);
  SeqNum ack = p.tcp.ack();
  uint32_t w = right > ack ? static_cast<uint32_t>(right - ack) >> f.window_shift : 0;
  w = std::min<uint32_t>(w, 0xffff);
  if (w != p.tcp.window()) p.tcp.set_window(static_cast<uint16_t>(w));
}

SeqNum PacketLayer::window_right(const Flow& f, SeqNum kernel_right) const {
  bool gated = effective_mode(f) == Mode::Duplex && s_.role == Role::Primary;
  SeqNum right =
      gated && f.backup_right ? SeqNum::min(kernel_right, *f.backup_right) : kernel_right;
  return f.handover_right ? SeqNum::min(right, *f.handover_right) : right;
}

void PacketLayer::retain(Flow& f, SeqNum seq, SeqNum end, const wire::TcpPacket& p) {
  if (f.client_ack_seen && end <= f.client_acked) return;
  if (!f.retained.empty() && end <= f.retained_end) return;  // a retransmission of bytes we hold
  auto bytes = p.ip.bytes();
  f.retained.push_back(
      RetainedSegment{seq, end, std::vector<uint8_t>(bytes.begin(), bytes.end()), now_});
  f.retained_end = end;
}

void PacketLayer::note_kept_to_ack(Flow& f, std::chrono::nanoseconds sample) {
  using std::chrono::microseconds;
  if (sample.count() < 0) return;  // the clock stepped back: no measurement
  auto us = std::chrono::duration_cast<microseconds>(sample);
  f.kept_to_ack = f.kept_to_ack ? (*f.kept_to_ack * 7 + us) / 8 : us;
}

void PacketLayer::maybe_fake_ack(Flow& f) {
  if (!f.client_ack_seen || !f.kernel_isn_known) return;
  SeqNum target = SeqNum::min(f.client_acked, f.kernel_snd_nxt);
  if (f.have_kernel_ack_given && target <= f.kernel_ack_given) return;
  // The client acknowledged these bytes before this kernel sent them (the node lags): tell the
  // kernel on the client's behalf, or it retransmits forever (the paper's "fake" ACK).
  wire::TcpSegmentSpec spec;
  spec.seq = f.kernel_rcv_nxt;
  spec.ack = f.kernel_to_client.unapply(target);
  spec.flags = tf::ACK;
  spec.window = f.client_window;
  to_kernel_as_client(f, spec);
  f.kernel_ack_given = target;
  f.have_kernel_ack_given = true;
  ++counters_.fake_acks;
}

void PacketLayer::note_has(Flow& f, SeqNum seq) {
  if (s_.role != Role::Backup) return;
  if (f.local_has_known && seq <= f.local.has) return;
  f.local.has = seq;
  f.local_has_known = true;
  mark_dirty(f);
}

// Backup: the window's right edge and the out-of-order ranges of this node's kernel, from each of
// its segments (the primary must not let the client send beyond them, or claim them received).
void PacketLayer::note_kernel_window(Flow& f, const wire::TcpPacket& p, bool syn_ack) {
  uint32_t shift = syn_ack ? 0 : f.window_shift;  // a SYN's window is never scaled
  SeqNum right = p.tcp.ack() + (uint32_t{p.tcp.window()} << shift);
  if (f.local.right && right <= *f.local.right) return;
  f.local.right = right;
  if (f.local_has_known) mark_dirty(f);
}

void PacketLayer::mark_dirty(Flow& f) {
  // No Has for an unprotected flow: the primary does not know it and would keep it forever.
  if (effective_mode(f) == Mode::Duplex) dirty_.insert(&f);
}

void PacketLayer::note_local_has(const Endpoint& fake, SeqNum seq) {
  auto it = by_fake_.find(fake);
  if (it != by_fake_.end()) note_has(*it->second, seq);
}

void PacketLayer::peer_reset(const ConnKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  Flow& f = *it->second;
  f.reset = true;
  if (!f.closed_at) f.closed_at = now_;
}

void PacketLayer::on_backup_has(const ConnKey& key, const HasReport& report, TimePoint now) {
  now_ = now;
  auto it = by_key_.find(key);
  if (it == by_key_.end()) {
    auto [e, fresh] = early_has_.try_emplace(key, report, now);
    if (!fresh) {
      HasReport merged = report;
      merged.has = SeqNum::max(e->second.first.has, report.has);
      if (e->second.first.right && (!merged.right || *e->second.first.right > *merged.right))
        merged.right = e->second.first.right;
      e->second = {merged, now};
    }
    return;
  }
  if (it->second->unprotected) return;  // served by this node alone: nothing gates it
  apply_report(*it->second, report);
  release_gate(*it->second);
}

void PacketLayer::release_gate(Flow& f) {
  bool gated = effective_mode(f) == Mode::Duplex && s_.role == Role::Primary;
  if (f.held_syn_ack) {
    if (gated && !(f.backup_has_known && f.backup_has > SeqNum(f.key.isn))) return;
    emit_.to_client(*f.held_syn_ack, 0);
    ++counters_.to_client;
    f.held_syn_ack.reset();
    f.ack_sent = SeqNum(f.key.isn + 1);
    f.ack_sent_known = true;
  }
  if (!f.kernel_isn_known || !f.ack_sent_known) return;
  SeqNum target = gated ? SeqNum::min(f.kernel_rcv_nxt, f.backup_has) : f.kernel_rcv_nxt;
  // Also a window update when the backup's kernel opened a window that had (nearly) closed.
  SeqNum right = window_right(f, f.kernel_rcv_nxt + (uint32_t{f.kernel_window} << f.window_shift));
  bool reopened = f.right_sent && right > *f.right_sent &&
                  static_cast<uint32_t>(*f.right_sent - f.ack_sent) < kSmallWindow;
  if (target > f.ack_sent || reopened) send_ack_to_client(f, SeqNum::max(target, f.ack_sent));
}

void PacketLayer::send_ack_to_client(Flow& f, SeqNum ack, std::optional<SeqNum> seq) {
  wire::TcpSegmentSpec spec;
  spec.src = s_.advertised;
  spec.dst = f.client;
  spec.seq = seq.value_or(f.kernel_snd_nxt);
  spec.ack = ack;
  spec.flags = tf::ACK;
  SeqNum right = window_right(f, f.kernel_rcv_nxt + (uint32_t{f.kernel_window} << f.window_shift));
  uint32_t w = right > ack ? static_cast<uint32_t>(right - ack) >> f.window_shift : 0;
  spec.window = static_cast<uint16_t>(std::min<uint32_t>(w, 0xffff));
  auto pkt = wire::build_tcp_packet(spec);
  emit_.to_client(pkt, 0);
  ++counters_.to_client;
  ++counters_.acks_fabricated;
  if (!f.ack_sent_known || ack > f.ack_sent) f.ack_sent = ack;
  f.ack_sent_known = true;
  SeqNum sent_right = ack + (uint32_t{spec.window} << f.window_shift);
  if (!f.right_sent || sent_right > *f.right_sent) f.right_sent = sent_right;
}

void PacketLayer::take_over(TimePoint now) {
  now_ = now;
  dirty_.clear();
  awaiting_.clear();
  for (auto& [client, fp] : by_client_) {
    // An unprotected flow was this node's alone already; the dead primary never knew it.
    if (!fp->unprotected) serve_alone(*fp, now);
  }
}

void PacketLayer::serve_alone(Flow& f, TimePoint now) {
  f.handover_right.reset();
  if (!f.kernel_isn_known || f.reset) return;
  for (auto& seg : f.retained) {
    emit_.to_client(seg.packet, f.segment_size);
    ++counters_.retained_sent;
    ++counters_.to_client;
  }
  // Acknowledge every client byte this node holds, also those the primary never acknowledged.
  send_ack_to_client(f, f.kernel_rcv_nxt);
  // This kernel's retransmission timer backed off while the primary's copies were the ones on
  // the wire; if the burst above is lost too, the client (with nothing to send) would wait for
  // it, seconds. Resend the oldest unacknowledged segment on a fresh timer for a while.
  if (!f.retained.empty()) {
    std::chrono::microseconds gap = kTakeoverRto;
    if (f.kept_to_ack)
      gap = std::max<std::chrono::microseconds>(kTakeoverRtoMin, std::min(gap, 2 * *f.kept_to_ack));
    f.resend_gap = gap;
    f.resend_at = now + gap;
    f.resend_until = now + kTakeoverResendFor;
    resending_.insert(&f);
  }
}

void PacketLayer::resend_due(TimePoint now) {
  now_ = now;
  for (auto it = resending_.begin(); it != resending_.end();) {
    Flow& f = **it;
    if (f.retained.empty() || *f.resend_at > f.resend_until || f.reset) {
      f.resend_at.reset();
      it = resending_.erase(it);
      continue;
    }
    if (now >= *f.resend_at) {
      emit_.to_client(f.retained.front().packet, f.segment_size);
      ++counters_.takeover_resends;
      ++counters_.to_client;
      f.resend_gap *= 2;
      f.resend_at = now + f.resend_gap;
    }
    ++it;
  }
}

void PacketLayer::peer_lost(TimePoint now) {
  now_ = now;
  dirty_.clear();
  awaiting_.clear();
  for (auto& [client, fp] : by_client_) {
    // An unprotected flow is served by this node alone already: the backup never saw it.
    if (!fp->unprotected) stop_gating(*fp);
  }
}

void PacketLayer::stop_gating(Flow& f) {
  f.retained.clear();
  f.handover_right.reset();
  if (f.reset) return;
  release_gate(f);
  if (!f.kernel_isn_known || !f.client_ack_seen || !f.ack_sent_known) return;
  // The client's recent packets went to the dead backup. Rather than wait for either side's
  // retransmission timer: a segment below the client's RCV.NXT makes it answer with an ACK at
  // once (RFC 793 3.9, unacceptable segment), and duplicate ACKs make it fast-retransmit data
  // the backup swallowed (RFC 5681 3.2). Sent after the gratuitous ARP, so answers come here.
  send_ack_to_client(f, f.ack_sent, f.client_acked - 1);
  for (int i = 0; i < 4; ++i) send_ack_to_client(f, f.ack_sent);
}

void PacketLayer::flush() {
  for (Flow* f : dirty_) {
    if (f->unprotected || !f->local_has_known || f->local_reported == f->local) continue;
    emit_.backup_has(f->key, f->local);
    f->local_reported = f->local;
  }
  dirty_.clear();
}

void PacketLayer::mark_unprotected() {
  for (auto& [client, fp] : by_client_) {
    Flow& f = *fp;
    if (f.unprotected) continue;
    // Called in simplex (the survivor), nothing is gated; were it gated, release it as peer_lost
    // does, or bytes the backup will never report stay unacknowledged.
    bool was_gated = s_.role == Role::Primary && mode() == Mode::Duplex;
    f.unprotected = true;
    dirty_.erase(&f);
    if (was_gated && !f.reset) release_gate(f);
  }
}

std::optional<Adoption> PacketLayer::protect(const ConnKey& key, SeqNum client_next,
                                             std::span<const uint8_t> unread, TimePoint now) {
  now_ = now;
  auto it = by_key_.find(key);
  if (it == by_key_.end() || mode() != Mode::Duplex) return std::nullopt;
  Flow& f = *it->second;
  // Quiet: established, not closing, every byte sent acknowledged by the client (the peer's
  // kernel starts with nothing to retransmit), and the client never acknowledged a byte the peer
  // will not get with the connection (it would not send it again: lost with us).
  SeqNum handed_end = client_next + static_cast<uint32_t>(unread.size());
  bool quiet = f.unprotected && f.kernel_isn_known && !f.reset && !f.closed_at && !f.client_fin &&
               !f.kernel_fin && !f.held_syn_ack && f.retained.empty() && f.client_ack_seen &&
               f.client_acked == f.kernel_snd_nxt && f.ack_sent_known && f.ack_sent <= handed_end;
  if (!quiet) return std::nullopt;
  f.unprotected = false;
  f.client_start = client_next;
  if (s_.role == Role::Primary) {
    // I1 from here on: nothing past client_next until the peer reports holding it.
    f.backup_has_known = true;
    f.backup_has = client_next;
    f.backup_right.reset();
  } else {
    f.local_has_known = true;
    f.local.has = SeqNum::max(f.kernel_rcv_nxt, handed_end);
    f.local.right = f.kernel_rcv_nxt + (uint32_t{f.kernel_window} << f.window_shift);
    f.local_reported.reset();
    mark_dirty(f);
  }
  // The client may have been told a window far larger than the peer's fresh kernel offers (it
  // grew here): shrink it to about a fresh one now, or a large upload starting right away would
  // overrun the peer and wait for retransmission timers (chaos cycles: 1-1.4 s stalls).
  SeqNum fresh_right = handed_end + kFreshWindow;
  if (!f.right_sent || *f.right_sent > fresh_right) {
    f.handover_right = fresh_right;
    send_ack_to_client(f, f.ack_sent);
    f.right_sent = fresh_right;
  }
  ++counters_.flows_handed;
  awaiting_.insert(&f);
  Adoption a{f.key,           client_next,      f.kernel_snd_nxt,
             f.client_window, f.window_shift,   f.client_wscale,
             f.client_mss,    f.client_sack_ok, {}};
  a.unread.assign(unread.begin(), unread.end());
  return a;
}

bool PacketLayer::adopt(const Adoption& a, TimePoint now) {
  now_ = now;
  if (mode() != Mode::Duplex) return false;
  Endpoint client{a.key.ip, a.key.port};
  if (auto it = by_client_.find(client); it != by_client_.end()) {
    // The survivor's view is the one the client has: this node's flow for the port is an older
    // connection, or its own copy of this one (its SYN reached both nodes at the rejoin), whose
    // state may lack what the survivor alone received. The message layer discarded its session.
    if (it->second->key == a.key)
      log::info({.event = "adopt", .conn = a.key},
                "packet: adopt {}: replacing this node's own copy", a.key.to_string());
    drop_flow(*it->second);
  }
  Flow* f = insert_flow(a.key, client, now);
  if (!f) {
    log::warn({.event = "adopt_refused", .conn = a.key, .reason = "flow table full"},
              "packet: adopt {}: the flow table is full", a.key.to_string());
    return false;
  }
  f->server_isn = a.server_next - 1;
  f->client_start = a.client_next;
  f->adopting = true;
  f->adopt_shift = a.window_shift;
  f->client_offered_wscale = a.client_wscale.has_value();
  f->client_wscale = a.client_wscale;
  f->client_mss = a.client_mss;
  f->client_sack_ok = a.sack_permitted;
  f->client_ack_seen = true;
  f->client_acked = a.server_next;
  f->client_window = a.client_window;
  f->client_nxt = a.client_next + static_cast<uint32_t>(a.unread.size());
  uint8_t shift = a.client_wscale ? *a.client_wscale : 0;
  f->client_max_window = uint32_t{a.client_window} << shift;
  f->client_right = a.server_next + f->client_max_window;
  f->ack_sent_known = true;
  f->ack_sent = a.client_next;
  if (s_.role == Role::Primary && !(f->backup_has_known && f->backup_has > a.client_next)) {
    f->backup_has_known = true;
    f->backup_has = a.client_next;
  }
  f->adopt_started = now;
  f->adopt_unread = a.unread;
  send_made_up_syn(*f);
  return true;
}

void PacketLayer::send_made_up_syn(Flow& f) {
  wire::TcpOptions o;
  o.mss = f.client_mss;
  o.wscale = f.client_wscale;
  o.sack_permitted = f.client_sack_ok;
  auto opts = wire::encode_options(o);
  wire::TcpSegmentSpec spec;
  spec.seq = f.client_start - 1;
  spec.flags = tf::SYN;
  spec.window = 0xffff;
  spec.options = opts;
  to_kernel_as_client(f, spec);
  ++counters_.to_kernel;
}

void PacketLayer::to_kernel_as_client(const Flow& f, wire::TcpSegmentSpec spec) {
  spec.src = f.fake;
  spec.dst = s_.listen;
  emit_.to_kernel(wire::build_tcp_packet(spec));
}

void PacketLayer::refuse_adoption(Flow& f, std::string_view why) {
  if (f.from_cookie) {
    // Nobody else is waiting for it: the client's next packet returns the cookie again.
    log::warn({.event = "refused", .conn = f.key, .reason = why},
              "packet: {} (SYN cookie): {}; dropped", f.key.to_string(), why);
    drop_flow(f);
    return;
  }
  log::warn({.event = "adopt_refused", .conn = f.key, .reason = why},
            "packet: adopt {}: {}; refused", f.key.to_string(), why);
  ++counters_.adoptions_refused;
  emit_.adoption_refused(f.key);
  drop_flow(f);
}

// The kernel answered the made-up SYN: map its ISN onto the survivor's sequence space (done by
// kernel_to_client, server_isn = server_next - 1) and complete its handshake on the client's
// behalf. Its window must mean what the client reads in it: the same scale as the survivor's.
void PacketLayer::finish_adoption(Flow& f) {
  f.adopting = false;
  if (f.from_cookie) {
    // The client's ACK, and whatever came with or after it, completes this kernel's handshake.
    replay_early(f);
    return;
  }
  if (f.window_shift != f.adopt_shift) {
    wire::TcpSegmentSpec rst;
    rst.seq = f.kernel_rcv_nxt;
    rst.flags = tf::RST;
    to_kernel_as_client(f, rst);
    return refuse_adoption(f,
                           fmt::format("this kernel scales its window by {}, the client expects {} "
                                       "(net.ipv4.tcp_rmem differs between the nodes?)",
                                       f.window_shift, f.adopt_shift));
  }
  maybe_fake_ack(f);  // the client acknowledged server_next: the handshake's ACK
  // The bytes the survivor held unread, as the client sent them (it will not send them again if
  // it was told they arrived), in pieces well under the TUN's MTU.
  constexpr size_t kPiece = 1024;
  SeqNum seq = f.client_start;
  std::span<const uint8_t> rest = f.adopt_unread;
  while (!rest.empty()) {
    auto piece = rest.first(std::min(rest.size(), kPiece));
    wire::TcpSegmentSpec spec;
    spec.seq = seq;
    spec.ack = f.kernel_to_client.unapply(f.client_acked);
    spec.flags = tf::ACK | tf::PSH;
    spec.window = f.client_window;
    spec.payload = piece;
    to_kernel_as_client(f, spec);
    ++counters_.to_kernel;
    seq = seq + static_cast<uint32_t>(piece.size());
    rest = rest.subspan(piece.size());
  }
  f.adopt_unread.clear();
  f.adopt_unread.shrink_to_fit();
  ++counters_.flows_adopted;
  replay_early(f);
  emit_.adopted(f.key);
  if (log::enabled(spdlog::level::debug))
    log::debug({.event = "adopt", .conn = f.key}, "packet: adopted {} as {}", f.key.to_string(),
               f.fake.to_string());
}

void PacketLayer::adoption_confirmed(const ConnKey& key) {
  auto it = by_key_.find(key);
  if (it != by_key_.end()) awaiting_.erase(it->second);
}

void PacketLayer::unprotect(const ConnKey& key, TimePoint now) {
  now_ = now;
  auto it = by_key_.find(key);
  if (it == by_key_.end() || it->second->unprotected) return;
  Flow& f = *it->second;
  f.unprotected = true;
  dirty_.erase(&f);
  awaiting_.erase(&f);
  ++counters_.adoptions_refused;
  if (s_.role == Role::Primary) {
    stop_gating(f);
  } else {
    serve_alone(f, now);
  }
}

void PacketLayer::expire(TimePoint now) {
  now_ = now;
  std::vector<Flow*> dead, stuck, half_open, idle;
  for (auto& [client, fp] : by_client_) {
    Flow& f = *fp;
    if (!f.closed_at && f.fully_closed()) f.closed_at = now;
    if (f.closed_at && now - *f.closed_at > s_.linger) {
      dead.push_back(&f);
    } else if (f.adopting) {
      if (now - f.adopt_started > kAdoptTimeout) stuck.push_back(&f);
    } else if (f.closed_at) {
      continue;  // lingers
    } else if (!f.client_ack_seen && now - f.last_client > s_.half_open_timeout) {
      // A SYN whose sender never completed the handshake: a spoofed source's, or a client that
      // gave up (were it retrying, its SYN would have refreshed last_client; if it comes later
      // it opens a fresh flow).
      half_open.push_back(&f);
    } else if (now - f.last_seen > s_.flow_idle_timeout) {
      // Nothing either way for far longer than the idle timeout lets a connection live: its
      // client vanished and this kernel gave up retransmitting to it.
      idle.push_back(&f);
    }
  }
  for (Flow* f : dead) drop_flow(*f);
  for (Flow* f : stuck) refuse_adoption(*f, "this kernel never answered the made-up SYN");
  for (Flow* f : half_open) {
    ++counters_.half_open_expired;
    forget(*f);
  }
  for (Flow* f : idle) {
    log::info({.event = "flow_forgotten", .conn = f->key, .reason = "idle"},
              "packet: {}: no packet for {} ms; forgotten", f->key.to_string(),
              std::chrono::duration_cast<std::chrono::milliseconds>(now - f->last_seen).count());
    ++counters_.idle_expired;
    forget(*f);
  }
  std::erase_if(early_has_, [&](const auto& e) { return now - e.second.second > s_.linger; });
}

void PacketLayer::forget(Flow& f) {
  // Frees this kernel's socket for it (a request socket of a half-open one) at once, at the
  // sequence number it expects next, rather than after its own retransmissions give up.
  wire::TcpSegmentSpec rst;
  rst.seq = f.kernel_isn_known ? f.kernel_rcv_nxt : f.client_nxt;
  rst.flags = tf::RST;
  to_kernel_as_client(f, rst);
  ++counters_.to_kernel;
  drop_flow(f);
}

void PacketLayer::drop_flow(Flow& f) {
  leave_half_open(f);
  dirty_.erase(&f);
  awaiting_.erase(&f);
  resending_.erase(&f);
  by_fake_.erase(f.fake);
  by_key_.erase(f.key);
  by_client_.erase(f.client);  // destroys f
}

const Flow* PacketLayer::find_by_fake(const Endpoint& fake) const {
  auto it = by_fake_.find(fake);
  return it == by_fake_.end() ? nullptr : it->second;
}

const Flow* PacketLayer::find_by_key(const ConnKey& key) const {
  auto it = by_key_.find(key);
  return it == by_key_.end() ? nullptr : it->second;
}

size_t PacketLayer::open_flows() const {
  return static_cast<size_t>(std::count_if(by_client_.begin(), by_client_.end(),
                                           [](const auto& e) { return !e.second->closed_at; }));
}

size_t PacketLayer::unprotected_flows() const {
  return static_cast<size_t>(std::count_if(by_client_.begin(), by_client_.end(), [](const auto& e) {
    return !e.second->closed_at && e.second->unprotected;
  }));
}

}  // namespace us::packet
