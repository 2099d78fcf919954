// IPv4 header (RFC 791 §3.1): a zero-copy view plus a validating parser.
// Read parse_ipv4 first: the view assumes a buffer it has accepted.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

#include "common/result.hpp"
#include "wire/address.hpp"

namespace us::wire {

// Why a packet was refused; shared by every parser in us::wire so drop counters use one enum.
enum class ParseError {
  TooShort,         // the buffer ends before the bytes the headers say exist
  BadVersion,       // IP version != 4 (ARP: hardware/protocol type not Ethernet/IPv4)
  BadHeaderLength,  // IHL < 5 (ARP: hardware/protocol address length not 6/4)
  BadTotalLength,   // IP total length smaller than the IP header
  BadChecksum,      // IP header checksum, or TCP checksum when asked to verify it
  Fragment,         // MF set or fragment offset != 0: we never reassemble
  NotTcp,           // IP protocol != 6
  BadDataOffset,    // TCP data offset < 5 or beyond the segment
  BadOption,        // malformed TCP option length (ARP: unknown opcode)
};
const char* to_string(ParseError e);

inline constexpr uint8_t kIpProtoTcp = 6;
inline constexpr size_t kIpv4MinHeaderLen = 20;

class Ipv4View {
 public:
  // packet = exactly total_len bytes, validated by parse_ipv4.
  explicit Ipv4View(std::span<uint8_t> packet) : b_(packet) {}

  size_t header_len() const;
  uint16_t total_len() const;
  uint8_t protocol() const;
  uint8_t ttl() const;
  uint16_t ident() const;
  uint16_t header_checksum() const;
  Ipv4Addr src() const;
  Ipv4Addr dst() const;

  // These keep the header checksum valid with an RFC 1624 update, so a header that arrived with a
  // bad checksum stays bad (we never launder corruption).
  void set_src(Ipv4Addr a);
  void set_dst(Ipv4Addr a);
  void set_ttl(uint8_t ttl);

  bool header_checksum_ok() const;
  void fill_header_checksum();

  std::span<uint8_t> bytes() const { return b_; }
  std::span<uint8_t> payload() const { return b_.subspan(header_len()); }

 private:
  std::span<uint8_t> b_;
};

// Validates version 4, IHL >= 5, total length within the buffer, the header checksum, and refuses
// fragments. The view covers exactly total_len bytes: trailing Ethernet padding is trimmed.
// Errors: TooShort (buffer < 20, < IHL*4 or < total length), BadVersion, BadHeaderLength,
// BadTotalLength (total length < IHL*4), BadChecksum, Fragment.
Result<Ipv4View, ParseError> parse_ipv4(std::span<uint8_t> buf);

}  // namespace us::wire
