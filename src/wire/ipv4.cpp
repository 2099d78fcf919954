#include "wire/ipv4.hpp"

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace us::wire {

namespace field {
// RFC 791 §3.1 byte offsets.
constexpr size_t kVerIhl = 0;
constexpr size_t kTotalLen = 2;
constexpr size_t kIdent = 4;
constexpr size_t kFlagsFrag = 6;
constexpr size_t kTtl = 8;
constexpr size_t kProto = 9;
constexpr size_t kChecksum = 10;
constexpr size_t kSrc = 12;
constexpr size_t kDst = 16;
}  // namespace field

const char* to_string(ParseError e) {
  switch (e) {
    case ParseError::TooShort:
      return "too short";
    case ParseError::BadVersion:
      return "bad version";
    case ParseError::BadHeaderLength:
      return "bad header length";
    case ParseError::BadTotalLength:
      return "bad total length";
    case ParseError::BadChecksum:
      return "bad checksum";
    case ParseError::Fragment:
      return "fragment";
    case ParseError::NotTcp:
      return "not tcp";
    case ParseError::BadDataOffset:
      return "bad data offset";
    case ParseError::BadOption:
      return "bad option";
  }
  return "unknown";
}

size_t Ipv4View::header_len() const {
  return size_t{b_[field::kVerIhl] & 0x0fu} * 4;
}
uint16_t Ipv4View::total_len() const {
  return load_be16(b_, field::kTotalLen);
}
uint8_t Ipv4View::protocol() const {
  return b_[field::kProto];
}
uint8_t Ipv4View::ttl() const {
  return b_[field::kTtl];
}
uint16_t Ipv4View::ident() const {
  return load_be16(b_, field::kIdent);
}
uint16_t Ipv4View::header_checksum() const {
  return load_be16(b_, field::kChecksum);
}
Ipv4Addr Ipv4View::src() const {
  return Ipv4Addr(load_be32(b_, field::kSrc));
}
Ipv4Addr Ipv4View::dst() const {
  return Ipv4Addr(load_be32(b_, field::kDst));
}

void Ipv4View::set_src(Ipv4Addr a) {
  store_be16(b_, field::kChecksum, csum_replace32(header_checksum(), src().v, a.v));
  store_be32(b_, field::kSrc, a.v);
}

void Ipv4View::set_dst(Ipv4Addr a) {
  store_be16(b_, field::kChecksum, csum_replace32(header_checksum(), dst().v, a.v));
  store_be32(b_, field::kDst, a.v);
}

void Ipv4View::set_ttl(uint8_t ttl) {
  // TTL shares its 16-bit checksum word with the protocol byte (RFC 1624 §4 updates whole words).
  uint16_t old_word = load_be16(b_, field::kTtl);
  uint16_t new_word = static_cast<uint16_t>((uint16_t{ttl} << 8) | protocol());
  store_be16(b_, field::kChecksum, csum_replace16(header_checksum(), old_word, new_word));
  b_[field::kTtl] = ttl;
}

bool Ipv4View::header_checksum_ok() const {
  return internet_checksum(b_.first(header_len())) == 0;
}

void Ipv4View::fill_header_checksum() {
  store_be16(b_, field::kChecksum, 0);
  store_be16(b_, field::kChecksum, internet_checksum(b_.first(header_len())));
}

Result<Ipv4View, ParseError> parse_ipv4(std::span<uint8_t> buf) {
  if (buf.size() < kIpv4MinHeaderLen) return Err{ParseError::TooShort};
  if ((buf[field::kVerIhl] >> 4) != 4) return Err{ParseError::BadVersion};
  size_t ihl = size_t{buf[field::kVerIhl] & 0x0fu} * 4;
  if (ihl < kIpv4MinHeaderLen) return Err{ParseError::BadHeaderLength};
  if (ihl > buf.size()) return Err{ParseError::TooShort};
  size_t total = load_be16(buf, field::kTotalLen);
  if (total < ihl) return Err{ParseError::BadTotalLength};
  if (total > buf.size()) return Err{ParseError::TooShort};
  // Ethernet pads frames to 60 bytes; only total_len bytes belong to IP (RFC 894).
  Ipv4View view(buf.first(total));
  if (!view.header_checksum_ok()) return Err{ParseError::BadChecksum};
  // MF set or a non-zero offset means a fragment (RFC 791 §3.2); reassembly is out of scope and
  // a fragment's TCP header cannot be rewritten safely.
  uint16_t flags_frag = load_be16(buf, field::kFlagsFrag);
  if ((flags_frag & 0x2000) != 0 || (flags_frag & 0x1fff) != 0) return Err{ParseError::Fragment};
  return view;
}

}  // namespace us::wire
