// Packets as the kernel hands them with offloads on: a virtio_net_hdr (TUN with IFF_VNET_HDR,
// AF_PACKET with PACKET_VNET_HDR) before an IPv4 packet that may be a TCP super-segment (TSO on
// the TUN, GRO or a TSO peer on the LAN) or carry only a partial checksum.
//  - From the LAN, the Segmenter turns a frame into the whole, checksummed packets the packet
//    layer and the relay take (a client's segments are checked and relayed one by one).
//  - From the TUN, read_kernel_frame hands the packet layer the super-segment as it is: it is
//    rewritten, gated and kept whole, and cut (plan_segments, append_segment) or handed to the
//    LAN's own segmentation only on its way to the client (docs/ARCHITECTURE.md, "Offloads").
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "wire/address.hpp"

namespace us::wire {

// struct virtio_net_hdr (linux/virtio_net.h), in the host's byte order (the legacy layout TUN
// and AF_PACKET use unless told otherwise).
struct VnetHeader {
  static constexpr size_t kLen = 10;
  static constexpr uint8_t kNeedsCsum = 1, kDataValid = 2;
  static constexpr uint8_t kGsoNone = 0, kGsoTcpV4 = 1, kGsoEcn = 0x80;
  uint8_t flags = 0;
  uint8_t gso_type = kGsoNone;
  uint16_t hdr_len = 0, gso_size = 0, csum_start = 0, csum_offset = 0;
};

// How an IPv4/TCP packet is cut into segments of at most `mss` payload bytes each. Each segment
// keeps the packet's headers but has its own length, IP id (+1 each), sequence number and real
// checksums; FIN and PSH go on the last only, CWR on the first only (as the kernel's GSO does).
struct SegmentPlan {
  size_t ihl = 0, hdr = 0, payload = 0, count = 0;
  uint16_t mss = 0;
  size_t size(size_t k) const;  // bytes of segment k
};
// Nullopt if `ip` is not a whole IPv4/TCP packet (its lengths disagree). mss 0: one segment.
std::optional<SegmentPlan> plan_segments(std::span<const uint8_t> ip, uint16_t mss);
// Appends segment k of `ip` to `out`.
void append_segment(const SegmentPlan& plan, std::span<const uint8_t> ip, size_t k,
                    std::vector<uint8_t>& out);
// Appends segments [first, first + count) of `ip` to `out` as one frame for a PACKET_VNET_HDR
// socket: a virtio_net_hdr asking for TCP segmentation of plan.mss and a partial checksum, an
// Ethernet header (dst, src, IPv4), then that part of the packet (its own length, IP id,
// sequence number and flags, as append_segment gives them) with its IP checksum and its TCP
// checksum field set as the kernel's own TSO packets have them (the pseudo-header's sum).
void append_gso_frame(const SegmentPlan& plan, std::span<const uint8_t> ip, size_t first,
                      size_t count, const MacAddr& dst, const MacAddr& src,
                      std::vector<uint8_t>& out);
// Sets the TCP checksum of a whole IPv4/TCP packet (checked by plan_segments) from scratch.
void fill_tcp_checksum(std::span<uint8_t> ip, size_t ihl);

// A frame of the TUN: the packet (its TCP checksum not filled in: the kernel left it to us) and
// the payload bytes per segment the kernel would have cut it into (0: it is one segment).
struct KernelFrame {
  std::span<uint8_t> packet;
  uint16_t segment_size = 0;
};
enum class FrameError { Malformed, Unsupported };
std::optional<KernelFrame> read_kernel_frame(std::span<uint8_t> frame, FrameError* why = nullptr);

class Segmenter {
 public:
  enum class Outcome {
    Ok,
    Malformed,    // too short for its header, lengths that disagree, a checksum outside it
    Unsupported,  // a GSO type other than TCP over IPv4
  };
  // `frame`: a virtio_net_hdr and the packet after it, behind a link header of `link_header`
  // bytes (an AF_PACKET SOCK_RAW frame's Ethernet header; csum_start counts it). On Ok,
  // packets() are whole IPv4 packets with real IP and TCP checksums: the frame's own bytes
  // (completed in place) when it needs no split, else its segments of gso_size (SegmentPlan), in
  // this Segmenter's buffer, valid until the next call.
  Outcome split(std::span<uint8_t> frame, size_t link_header = 0);
  std::span<const std::span<uint8_t>> packets() const { return out_; }

 private:
  Outcome segment(std::span<const uint8_t> ip, uint16_t mss);
  std::vector<uint8_t> buf_;
  std::vector<std::span<uint8_t>> out_;
};

VnetHeader parse_vnet_header(std::span<const uint8_t, VnetHeader::kLen> b);

}  // namespace us::wire
