#include "message/request_identity.hpp"

#include <array>
#include <cstdlib>

#include "http/head_edit.hpp"

namespace us::message {
namespace {

template <size_t N>
void put_be(std::array<uint8_t, N>& b, size_t at, uint64_t v, size_t len) {
  for (size_t i = 0; i < len; ++i) b[at + i] = static_cast<uint8_t>(v >> (8 * (len - 1 - i)));
}

}  // namespace

RequestIdentity::RequestIdentity(const Settings& s)
    : mode_(s.client_address),
      id_header_(s.request_id_header),
      id_(s.request_id),
      advertised_(s.advertised),
      edits_(mode_ == Settings::ClientAddress::XForwardedFor || !id_header_.empty()) {
  if (!id_header_.empty()) {
    // A configuration without the id function would send ids nobody can check: refuse it.
    if (!id_) std::abort();
    strip_.push_back(http::lower_case(id_header_));
  }
  // X-Real-IP is one address: a client's would be believed. X-Forwarded-For is a list that
  // proxies append to; the last element, ours, is the one to trust (docs/CONFIG.md).
  if (mode_ == Settings::ClientAddress::XForwardedFor) {
    std::string real_ip = "x-real-ip";
    if (strip_.empty() || strip_.front() != real_ip) strip_.push_back(real_ip);
  }
}

void RequestIdentity::append_fields(const ConnKey& key, wire::SeqNum start, uint64_t index,
                                    std::string& out) const {
  if (mode_ == Settings::ClientAddress::XForwardedFor) {
    const std::string ip = key.ip.to_string();
    out += "X-Forwarded-For: " + ip + "\r\nX-Real-IP: " + ip + "\r\n";
  }
  if (!id_header_.empty()) out += id_header_ + ": " + request_id(key, start, index) + "\r\n";
}

void RequestIdentity::append_preface(const ConnKey& key, std::string& out) const {
  if (mode_ != Settings::ClientAddress::ProxyV2) return;
  // PROXY protocol v2 (haproxy's proxy-protocol.txt, section 2.2): signature, version 2 with
  // command PROXY, AF_INET over STREAM, 12 address bytes.
  std::array<uint8_t, kProxyV2Size> h{0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                                      0x55, 0x49, 0x54, 0x0A, 0x21, 0x11, 0x00, 0x0C};
  put_be(h, 16, key.ip.v, 4);
  put_be(h, 20, advertised_.ip.v, 4);
  put_be(h, 24, key.port, 2);
  put_be(h, 26, advertised_.port, 2);
  out.append(reinterpret_cast<const char*>(h.data()), h.size());
}

}  // namespace us::message
