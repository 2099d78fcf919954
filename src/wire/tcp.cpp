#include "wire/tcp.hpp"

#include <algorithm>
#include <cassert>

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace us::wire {

namespace field {
// RFC 793 §3.1 byte offsets.
constexpr size_t kSrcPort = 0;
constexpr size_t kDstPort = 2;
constexpr size_t kSeq = 4;
constexpr size_t kAck = 8;
constexpr size_t kOffsetFlags = 12;  // data offset (4 bits), reserved (4 bits), flags (8 bits)
constexpr size_t kFlags = 13;
constexpr size_t kWindow = 14;
constexpr size_t kChecksum = 16;
}  // namespace field

uint16_t TcpView::src_port() const {
  return load_be16(b_, field::kSrcPort);
}
uint16_t TcpView::dst_port() const {
  return load_be16(b_, field::kDstPort);
}
SeqNum TcpView::seq() const {
  return SeqNum(load_be32(b_, field::kSeq));
}
SeqNum TcpView::ack() const {
  return SeqNum(load_be32(b_, field::kAck));
}
size_t TcpView::header_len() const {
  return (size_t{b_[field::kOffsetFlags]} >> 4) * 4;
}
uint8_t TcpView::flags() const {
  return b_[field::kFlags];
}
uint16_t TcpView::window() const {
  return load_be16(b_, field::kWindow);
}
uint16_t TcpView::checksum() const {
  return load_be16(b_, field::kChecksum);
}

std::span<uint8_t> TcpView::options() const {
  return b_.subspan(kTcpMinHeaderLen, header_len() - kTcpMinHeaderLen);
}
std::span<uint8_t> TcpView::payload() const {
  return b_.subspan(header_len());
}

uint32_t TcpView::seg_len() const {
  auto n = static_cast<uint32_t>(payload().size());
  if (has(tcp_flags::SYN)) ++n;
  if (has(tcp_flags::FIN)) ++n;
  return n;
}

void TcpView::set_src_port(uint16_t p) {
  set_checksum(csum_replace16(checksum(), src_port(), p));
  store_be16(b_, field::kSrcPort, p);
}

void TcpView::set_dst_port(uint16_t p) {
  set_checksum(csum_replace16(checksum(), dst_port(), p));
  store_be16(b_, field::kDstPort, p);
}

void TcpView::set_seq(SeqNum s) {
  set_checksum(csum_replace32(checksum(), seq().raw(), s.raw()));
  store_be32(b_, field::kSeq, s.raw());
}

void TcpView::set_ack(SeqNum a) {
  set_checksum(csum_replace32(checksum(), ack().raw(), a.raw()));
  store_be32(b_, field::kAck, a.raw());
}

void TcpView::set_window(uint16_t w) {
  set_checksum(csum_replace16(checksum(), window(), w));
  store_be16(b_, field::kWindow, w);
}

void TcpView::set_flags(uint8_t f) {
  // The flags byte is the low half of the word that starts with the data offset.
  uint16_t old_word = load_be16(b_, field::kOffsetFlags);
  uint16_t new_word = static_cast<uint16_t>((old_word & 0xff00) | f);
  set_checksum(csum_replace16(checksum(), old_word, new_word));
  b_[field::kFlags] = f;
}

void TcpView::set_checksum(uint16_t c) {
  store_be16(b_, field::kChecksum, c);
}

void TcpView::patch(size_t offset, std::span<const uint8_t> data) {
  assert(offset + data.size() <= b_.size());
  assert(offset > field::kChecksum + 1 || offset + data.size() <= field::kChecksum);
  if (data.empty()) return;
  // Checksum words are aligned to the start of the header (which is even in the IP packet).
  size_t first = offset & ~size_t{1};
  size_t end = offset + data.size();
  uint32_t old_sum = csum_accumulate(b_.subspan(first, end - first));
  std::copy(data.begin(), data.end(), b_.begin() + static_cast<std::ptrdiff_t>(offset));
  uint32_t new_sum = csum_accumulate(b_.subspan(first, end - first));
  // Sums fold to 16 bits, so the RFC 1624 update applies to them as to single words.
  set_checksum(
      csum_replace16(checksum(), static_cast<uint16_t>(old_sum), static_cast<uint16_t>(new_sum)));
}

void TcpView::pseudo_header_replace(Ipv4Addr old_addr, Ipv4Addr new_addr) {
  set_checksum(csum_replace32(checksum(), old_addr.v, new_addr.v));
}

namespace {

// RFC 793 §3.1 pseudo-header: src, dst, zero, protocol, TCP length.
uint32_t pseudo_header_sum(Ipv4Addr src, Ipv4Addr dst, size_t tcp_len) {
  uint32_t sum = (src.v >> 16) + (src.v & 0xffff) + (dst.v >> 16) + (dst.v & 0xffff);
  return sum + kIpProtoTcp + static_cast<uint32_t>(tcp_len);
}

}  // namespace

bool TcpView::checksum_ok(Ipv4Addr src, Ipv4Addr dst) const {
  return csum_fold(csum_accumulate(b_, pseudo_header_sum(src, dst, b_.size()))) == 0;
}

void TcpView::fill_checksum(Ipv4Addr src, Ipv4Addr dst) {
  set_checksum(0);
  set_checksum(csum_fold(csum_accumulate(b_, pseudo_header_sum(src, dst, b_.size()))));
}

Result<TcpView, ParseError> parse_tcp(std::span<uint8_t> ip_payload) {
  if (ip_payload.size() < kTcpMinHeaderLen) return Err{ParseError::TooShort};
  size_t doff = (size_t{ip_payload[field::kOffsetFlags]} >> 4) * 4;
  if (doff < kTcpMinHeaderLen || doff > ip_payload.size()) return Err{ParseError::BadDataOffset};
  return TcpView(ip_payload);
}

void TcpPacket::set_src(Endpoint e) {
  Ipv4Addr old = ip.src();
  ip.set_src(e.ip);
  tcp.pseudo_header_replace(old, e.ip);
  tcp.set_src_port(e.port);
}

void TcpPacket::set_dst(Endpoint e) {
  Ipv4Addr old = ip.dst();
  ip.set_dst(e.ip);
  tcp.pseudo_header_replace(old, e.ip);
  tcp.set_dst_port(e.port);
}

Result<TcpPacket, ParseError> parse_tcp_packet(std::span<uint8_t> buf, bool verify_tcp_checksum) {
  auto ip = parse_ipv4(buf);
  if (!ip) return Err{ip.error()};
  if (ip->protocol() != kIpProtoTcp) return Err{ParseError::NotTcp};
  auto tcp = parse_tcp(ip->payload());
  if (!tcp) return Err{tcp.error()};
  if (verify_tcp_checksum && !tcp->checksum_ok(ip->src(), ip->dst()))
    return Err{ParseError::BadChecksum};
  return TcpPacket{*ip, *tcp};
}

std::vector<uint8_t> build_tcp_packet(const TcpSegmentSpec& spec) {
  assert(spec.options.size() <= kTcpMaxOptionsLen);
  size_t opt_len = (spec.options.size() + 3) & ~size_t{3};
  size_t tcp_hdr = kTcpMinHeaderLen + opt_len;
  size_t total = kIpv4MinHeaderLen + tcp_hdr + spec.payload.size();
  assert(total <= 0xffff);

  std::vector<uint8_t> pkt(total, 0);  // zero fill doubles as EOL padding
  std::span<uint8_t> b(pkt);

  b[0] = 0x45;  // version 4, IHL 5
  store_be16(b, 2, static_cast<uint16_t>(total));
  store_be16(b, 4, spec.ident);
  store_be16(b, 6, 0x4000);  // DF: we do not want our fabricated segments fragmented
  b[8] = 64;
  b[9] = kIpProtoTcp;
  store_be32(b, 12, spec.src.ip.v);
  store_be32(b, 16, spec.dst.ip.v);
  Ipv4View ip(b);
  ip.fill_header_checksum();

  std::span<uint8_t> t = b.subspan(kIpv4MinHeaderLen);
  store_be16(t, field::kSrcPort, spec.src.port);
  store_be16(t, field::kDstPort, spec.dst.port);
  store_be32(t, field::kSeq, spec.seq.raw());
  store_be32(t, field::kAck, spec.ack.raw());
  t[field::kOffsetFlags] = static_cast<uint8_t>((tcp_hdr / 4) << 4);
  t[field::kFlags] = spec.flags;
  store_be16(t, field::kWindow, spec.window);
  std::copy(spec.options.begin(), spec.options.end(), t.begin() + kTcpMinHeaderLen);
  std::copy(spec.payload.begin(), spec.payload.end(),
            t.begin() + static_cast<std::ptrdiff_t>(tcp_hdr));
  TcpView tcp(t);
  tcp.fill_checksum(spec.src.ip, spec.dst.ip);
  return pkt;
}

}  // namespace us::wire
