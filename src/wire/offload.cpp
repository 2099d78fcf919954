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

// The one's-complement sum of the TCP pseudo-header of the IPv4 packet `ip` (RFC 793 3.1).
uint32_t pseudo_header_sum(std::span<const uint8_t> ip, size_t ihl) {
  uint8_t pseudo[12];
  std::memcpy(pseudo, ip.data() + 12, 8);  // source and destination address
  pseudo[8] = 0;
  pseudo[9] = 6;
  store_be16(pseudo, 10, static_cast<uint16_t>(ip.size() - ihl));
  return csum_accumulate(pseudo);
}

// The TCP checksum of the IPv4 packet `ip` (header length ihl), from scratch.
uint16_t tcp_checksum(std::span<const uint8_t> ip, size_t ihl) {
  uint32_t sum = pseudo_header_sum(ip, ihl);
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
  out_.push_back(ip);
  return Outcome::Ok;
}

size_t SegmentPlan::size(size_t k) const {
  size_t off = k * mss;
  return hdr + (count == 1 ? payload : std::min<size_t>(mss, payload - std::min(payload, off)));
}

std::optional<SegmentPlan> plan_segments(std::span<const uint8_t> ip, uint16_t mss) {
  if (ip.size() < 40 || (ip[0] >> 4) != 4 || ip[9] != 6) return std::nullopt;
  SegmentPlan p;
  p.ihl = size_t{ip[0] & 0x0fu} * 4;
  size_t total = load_be16(ip, 2);
  if (p.ihl < 20 || total > ip.size() || p.ihl + 20 > total) return std::nullopt;
  size_t doff = static_cast<size_t>(ip[p.ihl + 12] >> 4) * 4;
  p.hdr = p.ihl + doff;
  if (doff < 20 || p.hdr > total) return std::nullopt;
  p.payload = total - p.hdr;
  p.mss = mss;
  p.count = (mss == 0 || p.payload <= mss) ? 1 : (p.payload + mss - 1) / mss;
  return p;
}

void fill_tcp_checksum(std::span<uint8_t> ip, size_t ihl) {
  std::span<uint8_t> tcp = ip.subspan(ihl);
  store_be16(tcp, 16, 0);
  store_be16(tcp, 16, tcp_checksum(ip, ihl));
}

namespace {

// Appends segments [first, first + count) of `ip` to `out` as one IPv4/TCP packet: the headers
// with its own total length, IP id (the whole's + first, as the kernel's GSO numbers them) and IP
// checksum, sequence number and flags (FIN and PSH on the last piece only, CWR on the first
// only), then its payload. The TCP checksum field is left as it was. Returns the packet.
std::span<uint8_t> append_piece(const SegmentPlan& plan, std::span<const uint8_t> ip, size_t first,
                                size_t count, std::vector<uint8_t>& out) {
  size_t off = first * plan.mss;
  size_t len = plan.count == 1
                   ? plan.payload
                   : std::min(plan.payload - std::min(plan.payload, off), count * size_t{plan.mss});
  size_t at = out.size();
  out.resize(at + plan.hdr + len);
  std::span<uint8_t> pkt(out.data() + at, plan.hdr + len);
  std::memcpy(pkt.data(), ip.data(), plan.hdr);
  std::memcpy(pkt.data() + plan.hdr, ip.data() + plan.hdr + off, len);
  store_be16(pkt, 2, static_cast<uint16_t>(pkt.size()));
  store_be16(pkt, 4, static_cast<uint16_t>(load_be16(ip, 4) + first));
  store_be16(pkt, 10, 0);
  store_be16(pkt, 10, internet_checksum(pkt.first(plan.ihl)));
  store_be32(pkt, plan.ihl + 4, load_be32(ip, plan.ihl + 4) + static_cast<uint32_t>(off));
  uint8_t f = ip[plan.ihl + 13];
  if (first + count < plan.count) f &= static_cast<uint8_t>(~(kTcpFin | kTcpPsh));
  if (first > 0) f &= static_cast<uint8_t>(~kTcpCwr);
  pkt[plan.ihl + 13] = f;
  return pkt;
}

}  // namespace

void append_segment(const SegmentPlan& plan, std::span<const uint8_t> ip, size_t k,
                    std::vector<uint8_t>& out) {
  fill_tcp_checksum(append_piece(plan, ip, k, 1, out), plan.ihl);
}

void append_gso_frame(const SegmentPlan& plan, std::span<const uint8_t> ip, size_t first,
                      size_t count, const MacAddr& dst, const MacAddr& src,
                      std::vector<uint8_t>& out) {
  constexpr size_t kEth = 14;
  size_t at = out.size();
  out.resize(at + VnetHeader::kLen + kEth);
  uint8_t* w = out.data() + at;
  // Set before the piece is appended: `out` may move then.
  bool cwr = first == 0 && (ip[plan.ihl + 13] & kTcpCwr);
  uint16_t fields[4] = {static_cast<uint16_t>(kEth + plan.hdr), plan.mss,
                        static_cast<uint16_t>(kEth + plan.ihl), 16};
  w[0] = VnetHeader::kNeedsCsum;
  w[1] = static_cast<uint8_t>(VnetHeader::kGsoTcpV4 | (cwr ? VnetHeader::kGsoEcn : 0));
  std::memcpy(w + 2, fields, sizeof fields);  // hdr_len, gso_size, csum_start, csum_offset
  w += VnetHeader::kLen;
  std::memcpy(w, dst.b.data(), 6);
  std::memcpy(w + 6, src.b.data(), 6);
  w[12] = 0x08;
  w[13] = 0x00;
  std::span<uint8_t> pkt = append_piece(plan, ip, first, count, out);
  // As the kernel's own TSO packets have it: the pseudo-header's sum, the rest left to the GSO.
  store_be16(pkt, plan.ihl + 16,
             static_cast<uint16_t>(~csum_fold(pseudo_header_sum(pkt, plan.ihl))));
}

std::optional<KernelFrame> read_kernel_frame(std::span<uint8_t> frame, FrameError* why) {
  auto fail = [&](FrameError e) {
    if (why) *why = e;
    return std::nullopt;
  };
  if (frame.size() < VnetHeader::kLen + 20) return fail(FrameError::Malformed);
  VnetHeader h = parse_vnet_header(frame.first<VnetHeader::kLen>());
  uint8_t gso = h.gso_type & static_cast<uint8_t>(~VnetHeader::kGsoEcn);
  KernelFrame k{frame.subspan(VnetHeader::kLen), 0};
  if (gso == VnetHeader::kGsoTcpV4) {
    if (h.gso_size == 0) return fail(FrameError::Malformed);
    k.segment_size = h.gso_size;
  } else if (gso != VnetHeader::kGsoNone) {
    return fail(FrameError::Unsupported);
  }
  return k;
}

Segmenter::Outcome Segmenter::segment(std::span<const uint8_t> ip, uint16_t mss) {
  if (mss == 0) return Outcome::Malformed;
  auto plan = plan_segments(ip, mss);
  if (!plan) return Outcome::Malformed;
  buf_.clear();
  buf_.reserve(plan->count * plan->hdr + plan->payload);
  for (size_t k = 0; k < plan->count; ++k) append_segment(*plan, ip, k, buf_);
  uint8_t* w = buf_.data();
  for (size_t k = 0; k < plan->count; ++k) {
    out_.emplace_back(w, plan->size(k));
    w += plan->size(k);
  }
  return Outcome::Ok;
}

}  // namespace us::wire
