// Linux network-device adapters: the LAN interface (AF_PACKET for client packets and ARP, a raw IP
// socket to send as the advertised address) and the TUN device that hands packets to the local
// kernel's TCP stack (DESIGN.md section 4).
#pragma once
#include <linux/if_packet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "sys/fd.hpp"
#include "sys/send_queue.hpp"
#include "wire/address.hpp"
#include "wire/offload.hpp"

namespace us::sys {

struct LinkInfo {
  int index = 0;
  wire::MacAddr mac;
  int mtu = 0;
};
Result<LinkInfo, std::string> link_info(const std::string& ifname);

// Offloads on an interface (GRO, TSO, GSO, transmit checksum) that make AF_PACKET see merged
// or checksum-less super-packets: the tap reads them with a virtio_net_hdr and cuts them
// (wire/offload.hpp). Logged at start, so a reader of the log knows which path is in use.
std::vector<std::string> enabled_offloads(const std::string& ifname);

// The tap reads Ethernet frames (the ARP responder assumes Ethernet too).
inline constexpr size_t kEthernetHeader = 14;

// Room for one frame of the tap or the TUN: a virtio_net_hdr and an IPv4 packet of up to 64 KiB.
inline constexpr size_t kFrameBytes = 65536 + 64;

// Takes the interface down: how a fault point makes this node fall silent like a dead host.
void set_link_down(const std::string& ifname);

// Receives IPv4 packets addressed to the advertised endpoint (a BPF filter drops all else in the
// kernel), each after a virtio_net_hdr (PACKET_VNET_HDR: with the interface's offloads on, a
// packet may be a GRO super-segment or lack its checksum), and ARP frames; sends ARP frames.
class LanTap {
 public:
  static Result<LanTap, std::string> open(const LinkInfo& link, wire::Endpoint advertised);
  int ip_fd() const { return ip_.get(); }
  int arp_fd() const { return arp_.get(); }
  // Next client frame (virtio_net_hdr, Ethernet header, IP packet; padding trimmed later by the
  // parser);
  // empty when drained. Frames not addressed to this host's MAC are skipped: the non-front node
  // must not act on them.
  std::span<uint8_t> recv_frame(std::vector<uint8_t>& buf);
  // Up to batch.capacity() frames with one recvmmsg(2); returns how many were read (0: drained).
  // The batch keeps those addressed to this host (recv_frame's rule).
  size_t recv_frame_batch(class RecvBatch& batch);
  std::span<uint8_t> recv_arp(std::vector<uint8_t>& buf);
  bool send_arp_frame(std::span<const uint8_t> frame);

 private:
  Fd ip_, arp_;
  int ifindex_ = 0;
};

// Buffers for LanTap::recv_frame_batch: frame(i) of the last batch, i < size().
class RecvBatch {
 public:
  RecvBatch(size_t packets, size_t packet_bytes);
  size_t capacity() const { return bufs_.size(); }
  size_t size() const { return size_; }
  std::span<uint8_t> frame(size_t i) { return {bufs_[i].data(), lens_[i]}; }

 private:
  friend class LanTap;
  std::vector<std::vector<uint8_t>> bufs_;
  std::vector<size_t> lens_;
  size_t size_ = 0;
  std::vector<mmsghdr> msgs_;
  std::vector<iovec> iov_;
  std::vector<sockaddr_ll> from_;
};

// Sends complete IPv4 packets (header included) with any source address: at once (send), or
// queued and sent together by flush() (the packet path's batches).
class RawSender {
 public:
  static Result<RawSender, std::string> open();
  bool send(std::span<const uint8_t> packet);
  void queue(std::span<const uint8_t> packet);
  // Queues a packet to `to` built in place by `fill` (which appends it to the buffer it is given).
  template <class Fill>
  void queue_built(wire::Ipv4Addr to, Fill&& fill) {
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(to.v);
    queue_.push_built(fd_.get(), sin, std::forward<Fill>(fill));
  }
  void flush() { queue_.flush(fd_.get()); }
  const SendQueue& send_queue() const { return queue_; }

 private:
  Fd fd_;
  SendQueue queue_;
};

// Sends TCP super-segments to the client whole, through the LAN interface with a virtio_net_hdr
// (AF_PACKET, PACKET_VNET_HDR): the kernel, or the NIC with TSO, cuts them, and a client on a
// veth or behind GRO takes them whole. One sendmmsg entry per 64 KiB instead of one raw-socket
// packet per segment. Bypasses the kernel's IP output (its routing, netfilter OUTPUT and
// neighbour lookup): the next hop's MAC comes from NextHops.
class LanSender {
 public:
  static Result<LanSender, std::string> open(const LinkInfo& link);
  // Queues segments [first, first + count) of `ip` (an IPv4/TCP packet, its TCP checksum field
  // whatever it is) as one GSO frame of `plan.mss` payload bytes per segment, to `next_hop`.
  void queue(const wire::SegmentPlan& plan, std::span<const uint8_t> ip, size_t first, size_t count,
             wire::MacAddr next_hop);
  void flush() { queue_.flush(fd_.get()); }
  const SendQueue& send_queue() const { return queue_; }
  // Whether a send that failed with `err` says this socket or device takes no GSO frames (a bad
  // virtio_net_hdr for it, or a frame too big), rather than that the link is down or gone.
  static bool refuses_gso(int err);

 private:
  Fd fd_;
  int ifindex_ = 0;
  wire::MacAddr mac_;
  SendQueue queue_;
};

// The local kernel's side of the packet path. With IFF_VNET_HDR and TCP segmentation and
// checksum offload on, the kernel writes up to 64 KiB of a reply in one frame (one read here
// instead of one per segment) and leaves its checksum to us (wire::Segmenter).
class Tun {
 public:
  // Creates (or attaches to) a TUN device, assigns address/prefix and MTU and brings it up.
  static Result<Tun, std::string> open(const std::string& name, wire::Ipv4Addr address, int prefix,
                                       int mtu);
  int fd() const { return fd_.get(); }
  // Next frame: a virtio_net_hdr, then the packet; empty when drained.
  std::span<uint8_t> read(std::vector<uint8_t>& buf);
  // One whole, checksummed packet (the virtio_net_hdr in front is added here).
  bool write(std::span<const uint8_t> packet);

 private:
  Fd fd_;
};

}  // namespace us::sys
