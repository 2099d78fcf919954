#include "node/packet_path.hpp"

#include <spdlog/spdlog.h>

#include <cstring>

#include "wire/bytes.hpp"
#include "wire/tcp.hpp"

namespace us::node {

namespace {
constexpr size_t kMaxBatch = 256;  // packets read per readable event
constexpr size_t kLanBatch = 32;   // per recvmmsg
// At most this many segments per frame sent whole (about 16 KiB). Whole 64 KiB frames kept a
// client that reads slowly (128 KiB/s) at a zero window for 2.4-3.4 s at a time (its receive
// buffer grew and its window reopened late), where direct nginx's and per-packet sends keep it
// under 0.5 s; 12 does too, for 6% more CPU than 64 (docs/PERFORMANCE.md, step 5).
constexpr size_t kSegmentsPerFrame = 12;
// Whether an IPv4+TCP packet carries payload bytes (fault points aim at data, not handshakes).
// Parsing only reads the bytes; the packets here were already accepted by a packet layer.
bool carries_data(std::span<const uint8_t> p) {
  auto pkt = wire::parse_tcp_packet({const_cast<uint8_t*>(p.data()), p.size()},
                                    /*verify_tcp_checksum=*/false);
  return pkt.ok() && !pkt->tcp.payload().empty();
}
}  // namespace

PacketPath::PacketPath(const packet::Settings& s, Ports ports, FaultHook fault)
    : role_(s.role),
      io_(ports),
      fault_(std::move(fault)),
      pl_(s, *this),
      rx_(sys::kFrameBytes),
      lan_batch_(kLanBatch, sys::kFrameBytes) {}

void PacketPath::client_packet(std::span<uint8_t> p, packet::Source source, TimePoint now) {
  auto t0 = Clock::now();
  pl_.on_client_packet(p, source, now);
  packet_time_.add(Clock::now() - t0);
}

bool PacketPath::split(std::span<uint8_t> frame) {
  auto outcome = segmenter_.split(frame, sys::kEthernetHeader);
  if (outcome != wire::Segmenter::Outcome::Ok) {
    ++offload_.frames_refused;
    return false;
  }
  size_t n = segmenter_.packets().size();
  if (n > 1) {
    ++offload_.lan_super_segments;
    offload_.segments_cut += n;
  }
  return true;
}

void PacketPath::on_lan(TimePoint now) {
  for (size_t read = 0; read < kMaxBatch;) {
    size_t n = io_.tap.recv_frame_batch(lan_batch_);
    if (n == 0) break;
    read += n;
    // A lone packet (a quiet moment): its relay goes at once, ahead of this kernel's copy, as
    // the primary's work waits for it; batches are for when packets queue up.
    eager_relay_ = n == 1;
    for (size_t i = 0; i < lan_batch_.size(); ++i) {
      if (!split(lan_batch_.frame(i))) continue;
      for (auto p : segmenter_.packets()) client_packet(p, packet::Source::Lan, now);
    }
  }
  eager_relay_ = false;
  flush_io();
}

void PacketPath::use(Out o) {
  if (out_ == o) return;
  if (out_ == Out::Raw) io_.raw.flush();
  if (out_ == Out::Lan) io_.lan->flush();
  out_ = o;
}

void PacketPath::flush_io() {
  use(Out::None);
  io_.raw.flush();
  if (io_.lan) io_.lan->flush();
  io_.peer.flush();
  if (!io_.lan) return;
  const sys::SendQueue& q = io_.lan->send_queue();
  if (q.sent() > lan_sent_seen_) lan_drop_logged_ = false;  // it sends again: log the next
  lan_sent_seen_ = q.sent();
  if (q.refused() == offload_.whole_refused) return;
  // Those refused are lost and resent by the kernel, as after a loss on the wire.
  offload_.whole_refused = q.refused();
  int err = q.last_refusal();
  if (sys::LanSender::refuses_gso(err)) {
    // A LAN that cannot take them (a driver without GSO for packet sockets): every later one is
    // cut here.
    spdlog::warn("offload: the LAN refused a super-segment ({}): cutting them here from now on",
                 std::strerror(err));
    io_.lan = nullptr;
  } else if (!lan_drop_logged_) {
    // The link is down or the device went away: cutting would not help, and it may come back.
    spdlog::warn("offload: the LAN dropped a super-segment ({}); the kernel will resend it",
                 std::strerror(err));
    lan_drop_logged_ = true;
  }
}

void PacketPath::forward_lan_to_peer() {
  for (size_t i = 0; i < kMaxBatch; ++i) {
    auto frame = io_.tap.recv_frame(rx_);
    if (frame.empty()) break;
    if (!split(frame)) continue;
    for (auto p : segmenter_.packets()) io_.peer.send(peer::Type::Stray, p);
  }
  flush_io();
}

void PacketPath::on_tun(TimePoint now) {
  for (size_t i = 0; i < kMaxBatch; ++i) {
    auto frame = io_.tun.read(rx_);
    if (frame.empty()) break;
    // A super-segment stays whole through the packet layer: cut (or handed to the LAN's
    // segmentation) only on its way to the client, so the backup, which keeps it, never cuts.
    auto k = wire::read_kernel_frame(frame);
    if (!k) {
      ++offload_.frames_refused;
      continue;
    }
    if (k->segment_size) ++offload_.kernel_super_segments;
    auto t0 = Clock::now();
    pl_.on_kernel_packet(k->packet, now, k->segment_size);
    packet_time_.add(Clock::now() - t0);
  }
  flush_io();
}

void PacketPath::on_relay(std::span<const uint8_t> packet, TimePoint now) {
  // Copy it out: the packet layer rewrites in place.
  copy_.assign(packet.begin(), packet.end());
  if (role_ == Role::Primary && carries_data(copy_)) fault_("primary.before_ack");
  client_packet(copy_, packet::Source::Relay, now);
}

void PacketPath::on_stray(std::span<const uint8_t> packet, TimePoint now) {
  copy_.assign(packet.begin(), packet.end());
  pl_.on_client_packet(copy_, packet::Source::Lan, now);  // not timed, as before the split
}

void PacketPath::to_kernel(std::span<const uint8_t> p) {
  io_.tun.write(p);
}

void PacketPath::to_client(std::span<const uint8_t> p, uint16_t segment_size) {
  // Every packet's TCP checksum is filled in here: the kernel's are partial (TUN offload).
  auto plan = wire::plan_segments(p, segment_size);
  if (!plan) {
    ++offload_.frames_refused;
    return;
  }
  wire::Ipv4Addr dst(wire::load_be32(p, 16));
  if (plan->count > 1 && io_.lan) {
    if (auto mac = io_.next_hops->lookup(dst, Clock::now())) {
      use(Out::Lan);
      for (size_t k = 0; k < plan->count; k += kSegmentsPerFrame)
        io_.lan->queue(*plan, p, k, std::min(kSegmentsPerFrame, plan->count - k), *mac);
      ++offload_.sent_whole;
      return;
    }
    ++offload_.cut_no_next_hop;
  }
  use(Out::Raw);
  if (plan->count > 1) offload_.segments_cut += plan->count;
  for (size_t k = 0; k < plan->count; ++k)
    io_.raw.queue_built(dst,
                        [&](std::vector<uint8_t>& out) { wire::append_segment(*plan, p, k, out); });
}

void PacketPath::to_primary(std::span<const uint8_t> p) {
  if (carries_data(p)) fault_("backup.before_relay");
  io_.peer.send(peer::Type::Relay, p);
  if (eager_relay_) io_.peer.flush();
}

void PacketPath::to_front(std::span<const uint8_t> p) {
  io_.peer.send(peer::Type::Stray, p);
}

void PacketPath::backup_has(const ConnKey& key, const HasReport& r) {
  io_.replication.send_has(key, r);
}

void PacketPath::adoption_refused(const ConnKey& key) {
  io_.replication.send_adopt_refused(key);
}

void PacketPath::adopted(const ConnKey& key) {
  io_.replication.send_adopted(key);
}

std::optional<wire::SeqNum> PacketPath::stream_start(const wire::Endpoint& fake) const {
  const packet::Flow* f = pl_.find_by_fake(fake);
  return f ? std::optional<wire::SeqNum>(f->client_start) : std::nullopt;
}

bool PacketPath::unprotected(const wire::Endpoint& fake) const {
  const packet::Flow* f = pl_.find_by_fake(fake);
  return f && f->unprotected;
}

std::optional<ConnKey> PacketPath::key_for(const wire::Endpoint& fake) const {
  const packet::Flow* f = pl_.find_by_fake(fake);
  return f ? std::optional<ConnKey>(f->key) : std::nullopt;
}

void PacketPath::peer_reset(const ConnKey& key) {
  pl_.peer_reset(key);
}

void PacketPath::local_has(const wire::Endpoint& fake, wire::SeqNum seq) {
  pl_.note_local_has(fake, seq);
}

}  // namespace us::node
