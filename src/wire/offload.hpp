// Packets as the kernel hands them with offloads on: a virtio_net_hdr (TUN with IFF_VNET_HDR,
// AF_PACKET with PACKET_VNET_HDR) before an IPv4 packet that may be a TCP super-segment (TSO on
// the TUN, GRO or a TSO peer on the LAN) or carry only a partial checksum. The Segmenter turns
// one into the whole, checksummed packets the packet layer reads (docs/PERFORMANCE.md: why
// segments are cut here, at the edge, and not carried through the layers).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

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

class Segmenter {
 public:
  enum class Outcome {
    Ok,
    Malformed,    // too short for its header, lengths that disagree, a checksum outside it
    Unsupported,  // a GSO type other than TCP over IPv4
  };
  // `frame`: a virtio_net_hdr and the packet after it, behind a link header of `link_header`
  // bytes (an AF_PACKET SOCK_RAW frame's Ethernet header; csum_start counts it). On Ok, packets() are whole IPv4 packets
  // with real IP and TCP checksums: the frame's own bytes (completed in place) when it needs no
  // split, else segments of at most gso_size payload bytes each, in this Segmenter's buffer,
  // valid until the next call. Each segment keeps the super-segment's header but its own length,
  // IP id (+1 each), sequence number and checksums; FIN and PSH go on the last only, CWR on the
  // first only (as the kernel's own GSO does).
  Outcome split(std::span<uint8_t> frame, size_t link_header = 0);
  std::span<const std::span<uint8_t>> packets() const { return out_; }
  // The frame's virtio_net_hdr said the kernel had verified its checksum (DATA_VALID).
  bool verified() const { return verified_; }

 private:
  Outcome segment(std::span<uint8_t> ip, uint16_t mss);
  std::vector<uint8_t> buf_;
  std::vector<std::span<uint8_t>> out_;
  bool verified_ = false;
};

VnetHeader parse_vnet_header(std::span<const uint8_t, VnetHeader::kLen> b);

}  // namespace us::wire
