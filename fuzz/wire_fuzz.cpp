// libFuzzer target: the packet parsers every client and LAN packet meets first (src/wire). The
// input is tried as an IPv4 packet (IPv4 + TCP + TCP options), as an ARP payload and as an
// Ethernet frame. Read fuzz/README.md first.
//
// Checked beyond "no crash, no sanitizer report":
//  - the views stay inside the buffer the parser accepted;
//  - the in-place option rewrites (strip_timestamps, translate_sack, clamp_mss) keep the header
//    length, keep a valid TCP checksum valid and a bad one bad (RFC 1624 updates), and a SACK
//    translation undone by its inverse restores the exact bytes;
//  - options that parse re-encode (encode_options) into options that parse to the same values;
//  - an ARP packet that parses rebuilds into the same value;
//  - a virtio_net_hdr frame (TUN, or the tap's with its Ethernet header) that the Segmenter
//    cuts, whose TCP packet parses, gives segments that each parse with a valid checksum and
//    together carry its payload.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

#include "wire/arp.hpp"
#include "wire/ipv4.hpp"
#include "wire/offload.hpp"
#include "wire/tcp.hpp"
#include "wire/tcp_options.hpp"

#include "check.hpp"

namespace {

using namespace us::wire;

bool same_options(const TcpOptions& a, const TcpOptions& b) {
  if (a.mss != b.mss || a.wscale != b.wscale || a.sack_permitted != b.sack_permitted ||
      a.timestamp != b.timestamp)
    return false;
  // encode_options drops SACK blocks that do not fit beside the others: compare what it kept.
  if (b.sack_count > a.sack_count) return false;
  for (uint8_t i = 0; i < b.sack_count; ++i)
    if (!(a.sack[i] == b.sack[i])) return false;
  return true;
}

void options_roundtrip(std::span<const uint8_t> raw) {
  auto parsed = parse_options(raw);
  if (!parsed) return;
  // encode_options writes at most one of each kind; parse_options keeps the last of each, so
  // encoding what was parsed must give options that parse to the same values.
  TcpOptions value = *parsed;
  if (value.wscale && *value.wscale > 14) value.wscale = 14;  // the encoder's domain (RFC 7323)
  auto encoded = encode_options(value);
  FUZZ_CHECK(encoded.size() <= kTcpMaxOptionsLen && encoded.size() % 4 == 0);
  auto again = parse_options(encoded);
  FUZZ_CHECK(again.ok());
  FUZZ_CHECK(same_options(value, *again));
}

void tcp_packet(std::span<const uint8_t> data, bool verify) {
  std::vector<uint8_t> buf(data.begin(), data.end());
  auto pkt = parse_tcp_packet(buf, verify);
  if (!pkt) return;
  auto& ip = pkt->ip;
  auto& tcp = pkt->tcp;
  // The views cover validated bytes only.
  FUZZ_CHECK(ip.bytes().data() == buf.data() && ip.total_len() <= buf.size());
  FUZZ_CHECK(ip.header_len() >= kIpv4MinHeaderLen && ip.header_len() <= ip.total_len());
  FUZZ_CHECK(tcp.header_len() >= kTcpMinHeaderLen && tcp.header_len() <= tcp.bytes().size());
  FUZZ_CHECK(tcp.options().size() == tcp.header_len() - kTcpMinHeaderLen);
  FUZZ_CHECK(tcp.payload().size() == tcp.bytes().size() - tcp.header_len());
  FUZZ_CHECK(tcp.bytes().data() + tcp.bytes().size() == buf.data() + ip.total_len());
  FUZZ_CHECK(ip.header_checksum_ok());
  (void)tcp.seg_len();

  options_roundtrip(tcp.options());

  const bool sum_ok = tcp.checksum_ok(ip.src(), ip.dst());
  if (verify) FUZZ_CHECK(sum_ok);
  const size_t header_len = tcp.header_len();
  const std::vector<uint8_t> before(tcp.bytes().begin(), tcp.bytes().end());
  const bool options_ok = parse_options(tcp.options()).ok();

  // A SACK translation and its inverse give back the same bytes (the checksum included).
  const SeqOffset offset{static_cast<uint32_t>(before.size() * 2654435761u)};
  translate_sack(tcp, offset);
  FUZZ_CHECK(tcp.checksum_ok(ip.src(), ip.dst()) == sum_ok);
  translate_sack(tcp, offset.inverse());
  // Byte for byte but for the checksum: a received 0xFFFF (one's-complement zero, as valid as
  // 0x0000) may come back as 0x0000 after the two RFC 1624 updates.
  std::vector<uint8_t> undone(tcp.bytes().begin(), tcp.bytes().end());
  FUZZ_CHECK(undone.size() == before.size());
  FUZZ_CHECK(std::equal(before.begin(), before.begin() + 16, undone.begin()));
  FUZZ_CHECK(std::equal(before.begin() + 18, before.end(), undone.begin() + 18));
  FUZZ_CHECK(undone[16] == before[16] || (before[16] == 0xff && undone[16] == 0));
  FUZZ_CHECK(undone[17] == before[17] || (before[17] == 0xff && undone[17] == 0));

  const bool stripped = strip_timestamps(tcp);
  FUZZ_CHECK(tcp.header_len() == header_len);
  FUZZ_CHECK(tcp.checksum_ok(ip.src(), ip.dst()) == sum_ok);
  if (!options_ok) FUZZ_CHECK(!stripped);
  if (stripped) {
    auto after = parse_options(tcp.options());
    FUZZ_CHECK(after.ok() && !after->timestamp);
  }
  const bool clamped = clamp_mss(tcp, 536);
  FUZZ_CHECK(tcp.header_len() == header_len);
  FUZZ_CHECK(tcp.checksum_ok(ip.src(), ip.dst()) == sum_ok);
  if (clamped) {
    auto after = parse_options(tcp.options());
    FUZZ_CHECK(after.ok() && after->mss && *after->mss <= 536);  // the last MSS counts
  }
  // The payload is never touched by an option rewrite.
  FUZZ_CHECK(std::equal(before.begin() + static_cast<long>(header_len), before.end(),
                        tcp.payload().begin(), tcp.payload().end()));

  // Address rewrites keep both checksums as they were (valid stays valid).
  pkt->set_src(Endpoint{Ipv4Addr(198, 18, 0, 1), 80});
  pkt->set_dst(Endpoint{Ipv4Addr(198, 18, 1, 2), 40000});
  FUZZ_CHECK(ip.header_checksum_ok());
  FUZZ_CHECK(tcp.checksum_ok(ip.src(), ip.dst()) == sum_ok);
}

void arp(std::span<const uint8_t> payload) {
  auto parsed = parse_arp(payload);
  if (!parsed) return;
  auto frame = build_arp_frame(MacAddr::broadcast(), parsed->sender_mac, *parsed);
  FUZZ_CHECK(frame.size() == kEthernetHeaderLen + kArpLen);
  auto again = parse_arp(std::span<const uint8_t>(frame).subspan(kEthernetHeaderLen));
  FUZZ_CHECK(again.ok() && *again == *parsed);
}

void ethernet(std::span<const uint8_t> data) {
  std::vector<uint8_t> buf(data.begin(), data.end());
  auto frame = parse_ethernet(buf);
  if (!frame) return;
  FUZZ_CHECK(frame->payload.size() + kEthernetHeaderLen == buf.size());
  if (frame->ethertype == kEtherTypeArp) arp(frame->payload);
  if (frame->ethertype == kEtherTypeIpv4) tcp_packet(frame->payload, false);
}

}  // namespace

void offload_frame(std::span<const uint8_t> data, size_t link_header) {
  std::vector<uint8_t> buf(data.begin(), data.end());
  size_t skip = VnetHeader::kLen + link_header;
  std::vector<uint8_t> original;
  if (buf.size() > skip)
    original.assign(buf.begin() + static_cast<std::ptrdiff_t>(skip), buf.end());
  Segmenter seg;
  if (seg.split(buf, link_header) != Segmenter::Outcome::Ok) return;
  FUZZ_CHECK(!seg.packets().empty());
  auto whole = parse_tcp_packet(original, /*verify_tcp_checksum=*/false);
  // Only a cut frame is promised real checksums; one passed through is checked downstream.
  uint8_t gso = buf[1] & static_cast<uint8_t>(~VnetHeader::kGsoEcn);
  if (!whole || gso != VnetHeader::kGsoTcpV4) return;
  size_t payload = 0;
  for (auto p : seg.packets()) {
    std::vector<uint8_t> copy(p.begin(), p.end());
    auto part = parse_tcp_packet(copy, /*verify_tcp_checksum=*/true);
    FUZZ_CHECK(part.ok());
    payload += part->tcp.payload().size();
  }
  FUZZ_CHECK(payload == whole->tcp.payload().size());
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> in(data, size);
  tcp_packet(in, false);
  tcp_packet(in, true);
  options_roundtrip(in.subspan(0, std::min<size_t>(in.size(), kTcpMaxOptionsLen)));
  arp(in);
  ethernet(in);
  offload_frame(in, 0);
  offload_frame(in, 14);
  return 0;
}
