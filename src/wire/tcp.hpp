// TCP header (RFC 793 §3.1): a zero-copy view, a parser, a two-header packet, and a builder for
// fabricated segments. Read parse_tcp_packet first; the views assume buffers it has accepted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/result.hpp"
#include "wire/address.hpp"
#include "wire/ipv4.hpp"
#include "wire/seq.hpp"

namespace us::wire {

namespace tcp_flags {
constexpr uint8_t FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10, URG = 0x20,
                  ECE = 0x40, CWR = 0x80;
}  // namespace tcp_flags

inline constexpr size_t kTcpMinHeaderLen = 20;
inline constexpr size_t kTcpMaxOptionsLen = 40;

class TcpView {
 public:
  // segment = the IP payload, validated by parse_tcp.
  explicit TcpView(std::span<uint8_t> segment) : b_(segment) {}

  uint16_t src_port() const;
  uint16_t dst_port() const;
  SeqNum seq() const;
  SeqNum ack() const;
  size_t header_len() const;
  uint8_t flags() const;
  bool has(uint8_t flag) const { return (flags() & flag) != 0; }
  uint16_t window() const;
  uint16_t checksum() const;
  std::span<uint8_t> options() const;
  std::span<uint8_t> payload() const;
  std::span<uint8_t> bytes() const { return b_; }
  // Payload bytes + 1 for SYN + 1 for FIN (RFC 793 §3.3 SEG.LEN).
  uint32_t seg_len() const;

  // Setters update the TCP checksum incrementally (RFC 1624), so a corrupt segment stays corrupt.
  void set_src_port(uint16_t p);
  void set_dst_port(uint16_t p);
  void set_seq(SeqNum s);
  void set_ack(SeqNum a);
  void set_window(uint16_t w);
  void set_flags(uint8_t f);
  void set_checksum(uint16_t c);
  // Overwrites bytes at offset (from the start of the TCP header), fixing the checksum over every
  // 16-bit word touched, whatever the alignment. Used by the option rewrites.
  void patch(size_t offset, std::span<const uint8_t> data);

  // The checksum covers the pseudo-header (RFC 793 §3.1): call this when an IP address changes.
  void pseudo_header_replace(Ipv4Addr old_addr, Ipv4Addr new_addr);
  bool checksum_ok(Ipv4Addr src, Ipv4Addr dst) const;
  void fill_checksum(Ipv4Addr src, Ipv4Addr dst);

 private:
  std::span<uint8_t> b_;
};

// Errors: TooShort (< 20 bytes), BadDataOffset (data offset < 5 words or past the segment).
Result<TcpView, ParseError> parse_tcp(std::span<uint8_t> ip_payload);

// An IPv4+TCP packet in one buffer, both views.
struct TcpPacket {
  Ipv4View ip;
  TcpView tcp;

  // Rewrite address+port; both checksums are updated incrementally.
  void set_src(Endpoint e);
  void set_dst(Endpoint e);
  Endpoint src() const { return Endpoint{ip.src(), tcp.src_port()}; }
  Endpoint dst() const { return Endpoint{ip.dst(), tcp.dst_port()}; }
};

// parse_ipv4, then protocol 6 (else NotTcp), then parse_tcp. When verify_tcp_checksum, a bad TCP
// checksum is BadChecksum.
Result<TcpPacket, ParseError> parse_tcp_packet(std::span<uint8_t> buf, bool verify_tcp_checksum);

struct TcpSegmentSpec {
  Endpoint src;
  Endpoint dst;
  SeqNum seq;
  SeqNum ack;
  uint8_t flags = 0;
  uint16_t window = 0;
  std::span<const uint8_t> options = {};  // at most 40 bytes (asserted)
  std::span<const uint8_t> payload = {};
  uint16_t ident = 0;
};

// A complete IPv4+TCP packet with valid checksums, DF set, TTL 64. Options are padded to a multiple
// of 4 bytes with EOL (zero) bytes, as RFC 793 §3.1 "Padding" prescribes.
std::vector<uint8_t> build_tcp_packet(const TcpSegmentSpec& spec);

}  // namespace us::wire
