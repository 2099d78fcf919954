// The packet layer between its devices: client packets in from the LAN tap (or relayed by the
// peer) and out through the raw sender, kernel packets in and out through the TUN, relays and
// strays to the peer as datagrams, Has reports on the replication channel. It also serves the
// message layer's Flows, times every packet, and holds the packet fault points
// (backup.before_relay, primary.before_ack; docs/FAULTS.md). Read packet/packet_layer.hpp first.
#pragma once
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "common/histogram.hpp"
#include "core/vocabulary.hpp"
#include "message/flows.hpp"
#include "node/datagram_socket.hpp"
#include "packet/packet_layer.hpp"
#include "peer/replication.hpp"
#include "sys/netdev.hpp"
#include "sys/next_hops.hpp"
#include "wire/offload.hpp"

namespace us::node {

class PacketPath final : public packet::Emitter, public message::Flows {
 public:
  struct Ports {
    sys::LanTap& tap;
    sys::RawSender& raw;
    sys::Tun& tun;
    DatagramSocket& peer;            // relays (backup) and strays (primary)
    peer::Replication& replication;  // Has reports (backup)
    // Super-segments to the client whole, to the next hop NextHops names (both or neither;
    // absent: cut here and sent by `raw`).
    sys::LanSender* lan = nullptr;
    sys::NextHops* next_hops = nullptr;
  };
  PacketPath(const packet::Settings& s, Ports ports, FaultHook fault);

  packet::PacketLayer& layer() { return pl_; }
  const packet::PacketLayer& layer() const { return pl_; }

  // Read what the LAN tap or the TUN holds, at most 256 packets a call; then flush_io().
  void on_lan(TimePoint now);
  void on_tun(TimePoint now);
  // Sends what the packet layer emitted to the client (raw socket) and the peer (relays and
  // strays) since the last call, a system call per 64 packets: called at the end of every batch
  // (the node also calls it when the loop goes idle, and before dying at a fault point).
  void flush_io();
  // A node that handed over: client packets that still reach it (the client's ARP entry is not
  // updated yet) go to the peer unchanged, as strays, instead of through this packet layer.
  void forward_lan_to_peer();
  // A client packet from the peer: relayed by the backup (taken on the primary), or a stray
  // (taken by the packet layer as if from the LAN, if this node is the front: a backup in duplex,
  // or a node serving alone after its peer handed over).
  void on_relay(std::span<const uint8_t> packet, TimePoint now);
  void on_stray(std::span<const uint8_t> packet, TimePoint now);

  // Frames the kernels handed over whole, to be cut here (wire::Segmenter): super-segments from
  // this node's kernel (TUN) and from the LAN (GRO, or a peer's TSO), the segments cut from them,
  // and frames refused (malformed, or a GSO type other than TCP over IPv4).
  struct OffloadCounters {
    uint64_t kernel_super_segments = 0, lan_super_segments = 0, segments_cut = 0;
    uint64_t frames_refused = 0;
    // Super-segments sent to the client whole (LanSender), cut for want of a next hop's MAC,
    // and refused by the LAN socket (if it refused them as GSO frames, every later one is cut).
    uint64_t sent_whole = 0, cut_no_next_hop = 0, whole_refused = 0;
  };
  const OffloadCounters& offload() const { return offload_; }

  // Per packet through the packet layer, microseconds.
  const Histogram& packet_time() const { return packet_time_; }
  void reset_timing() { packet_time_.reset(); }

  // --- packet::Emitter
  void to_kernel(std::span<const uint8_t> p) override;
  void to_client(std::span<const uint8_t> p, uint16_t segment_size) override;
  void to_primary(std::span<const uint8_t> p) override;
  void to_front(std::span<const uint8_t> p) override;
  void backup_has(const ConnKey& key, const HasReport& r) override;
  void adoption_refused(const ConnKey& key) override;
  void adopted(const ConnKey& key) override;
  // --- message::Flows
  std::optional<ConnKey> key_for(const wire::Endpoint& fake) const override;
  void peer_reset(const ConnKey& key) override;
  bool unprotected(const wire::Endpoint& fake) const override;
  std::optional<wire::SeqNum> stream_start(const wire::Endpoint& fake) const override;
  void local_has(const wire::Endpoint& fake, wire::SeqNum seq) override;

 private:
  void client_packet(std::span<uint8_t> p, packet::Source source, TimePoint now);
  // Cuts a frame of the tap into segmenter_.packets(); false if refused (counted).
  bool split(std::span<uint8_t> frame);
  // Packets to the client leave through two sockets (raw, LanSender); this keeps their order:
  // what one queued is sent before the other takes a packet.
  enum class Out { None, Raw, Lan };
  void use(Out o);
  Out out_ = Out::None;

  Role role_;
  Ports io_;
  FaultHook fault_;
  packet::PacketLayer pl_;
  std::vector<uint8_t> rx_, copy_;
  sys::RecvBatch lan_batch_;
  wire::Segmenter segmenter_;
  OffloadCounters offload_;
  uint64_t lan_sent_seen_ = 0;    // the LAN socket's sent() at the last flush
  bool lan_drop_logged_ = false;  // a drop was logged since it last sent
  bool eager_relay_ = false;
  Histogram packet_time_;
};

}  // namespace us::node
