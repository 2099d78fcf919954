#include "wire/offload.hpp"

#include <algorithm>
#include <cstring>

#include "wire/bytes.hpp"
#include "wire/checksum.hpp"

namespace us::wire {

namespace {

constexpr uint8_t kTcpFin = 0x01, kTcpPsh = 0x08, kTcpCwr = 0x80;

uint16_t host16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// The TCP checksum of the IPv4 packet `ip` (header length ihl), from scratch.
uint16_t tcp_checksum(std::span<const uint8_t> ip, size_t ihl) {
  size_t tcp_len = ip.size() - ihl;
  uint8_t pseudo[12];
  std::memcpy(pseudo, ip.data() + 12, 8);  // source and destination address
  pseudo[8] = 0;
  pseudo[9] = 6;
  store_be16(pseudo, 10, static_cast<uint16_t>(tcp_len));
  uint32_t sum = csum_accumulate(pseudo);
  return csum_fold(csum_accumulate(ip.subspan(ihl), sum));
}

}  // namespace

VnetHeader parse_vnet_header(std::span<const uint8_t, VnetHeader::kLen> b) {
  VnetHeader h;
  h.flags = b[0];
  h.gso_type = b[1];
  h.hdr_len = host16(&b[2]);
  h.gso_size = host16(&b[4]);
  h.csum_start = host16(&b[6]);
  h.csum_offset = host16(&b[8]);
  return h;
}

Segmenter::Outcome Segmenter::split(std::span<uint8_t> frame, size_t link_header) {
  out_.clear();
  verified_ = false;
  if (frame.size() < VnetHeader::kLen + link_header) return Outcome::Malformed;
  VnetHeader h = parse_vnet_header(frame.first<VnetHeader::kLen>());
  std::span<uint8_t> ip = frame.subspan(VnetHeader::kLen + link_header);
  uint8_t gso = h.gso_type & static_cast<uint8_t>(~VnetHeader::kGsoEcn);
  if (gso == VnetHeader::kGsoTcpV4) return segment(ip, h.gso_size);
  if (gso != VnetHeader::kGsoNone) return Outcome::Unsupported;
  if (h.flags & VnetHeader::kNeedsCsum) {
    // The field holds the pseudo-header's sum; the kernel left the rest to whoever sends it on.
    if (h.csum_start < link_header) return Outcome::Malformed;
    size_t start = h.csum_start - link_header;
    size_t field = start + h.csum_offset;
    if (start >= ip.size() || field + 2 > ip.size()) return Outcome::Malformed;
    size_t end = ip.size();
    if (ip.size() >= 20 && (ip[0] >> 4) == 4) end = std::min<size_t>(end, load_be16(ip, 2));
    if (end <= field + 1) return Outcome::Malformed;
    store_be16(ip, field, csum_fold(csum_accumulate(ip.subspan(start, end - start))));
  }
  verified_ = (h.flags & VnetHeader::kDataValid) != 0;
  out_.push_back(ip);
  return Outcome::Ok;
}

Segmenter::Outcome Segmenter::segment(std::span<uint8_t> ip, uint16_t mss) {
  if (ip.size() < 40 || (ip[0] >> 4) != 4 || ip[9] != 6 || mss == 0) return Outcome::Malformed;
  size_t ihl = size_t{ip[0] & 0x0fu} * 4;
  size_t total = load_be16(ip, 2);
  if (ihl < 20 || total > ip.size() || ihl + 20 > total) return Outcome::Malformed;
  size_t doff = static_cast<size_t>(ip[ihl + 12] >> 4) * 4;
  size_t hdr = ihl + doff;
  if (doff < 20 || hdr > total) return Outcome::Malformed;
  size_t payload = total - hdr;
  size_t n = payload == 0 ? 1 : (payload + mss - 1) / mss;
  buf_.resize(n * hdr + payload);
  uint16_t id = load_be16(ip, 4);
  uint32_t seq = load_be32(ip, ihl + 4);
  uint8_t flags = ip[ihl + 13];
  uint8_t* w = buf_.data();
  for (size_t k = 0; k < n; ++k) {
    size_t off = k * mss;
    size_t len = std::min<size_t>(mss, payload - std::min(payload, off));
    std::memcpy(w, ip.data(), hdr);
    std::memcpy(w + hdr, ip.data() + hdr + off, len);
    std::span<uint8_t> seg(w, hdr + len);
    store_be16(seg, 2, static_cast<uint16_t>(hdr + len));
    store_be16(seg, 4, static_cast<uint16_t>(id + k));
    store_be16(seg, 10, 0);
    store_be16(seg, 10, internet_checksum(seg.first(ihl)));
    std::span<uint8_t> tcp = seg.subspan(ihl);
    store_be32(tcp, 4, seq + static_cast<uint32_t>(off));
    uint8_t f = flags;
    if (k + 1 < n) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
    if (k > 0) f &= static_cast<uint8_t>(~kTcpCwr);
    tcp[13] = f;
    store_be16(tcp, 16, 0);
    store_be16(tcp, 16, tcp_checksum(seg, ihl));
    out_.push_back(seg);
    w += seg.size();
  }
  return Outcome::Ok;
}

}  // namespace us::wire
