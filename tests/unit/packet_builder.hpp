// Test helpers: a fluent builder of IPv4+TCP packets (valid checksums, DF, TTL 64, ident 0, the
// same defaults as wire::build_tcp_packet) and a one-line description of a packet for failure
// messages. Used to build both the inputs and the expected outputs of the golden packet tables
// (golden_packets.hpp), so an expectation reads like the packet it stands for.
#pragma once
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include "wire/tcp.hpp"
#include "wire/tcp_options.hpp"

namespace us::test {

class PacketBuilder {
 public:
  PacketBuilder& from(wire::Endpoint e) {
    spec_.src = e;
    return *this;
  }
  PacketBuilder& to(wire::Endpoint e) {
    spec_.dst = e;
    return *this;
  }
  PacketBuilder& seq(uint32_t s) {
    spec_.seq = wire::SeqNum(s);
    return *this;
  }
  // Sets the ACK flag too.
  PacketBuilder& ack(uint32_t a) {
    spec_.ack = wire::SeqNum(a);
    spec_.flags |= wire::tcp_flags::ACK;
    return *this;
  }
  PacketBuilder& flags(uint8_t f) {
    spec_.flags |= f;
    return *this;
  }
  PacketBuilder& window(uint16_t w) {
    spec_.window = w;
    return *this;
  }
  PacketBuilder& options(const wire::TcpOptions& o) { return raw_options(wire::encode_options(o)); }
  // Option bytes exactly as given (padded with EOL to a multiple of 4 by the packet builder).
  PacketBuilder& raw_options(std::vector<uint8_t> bytes) {
    options_ = std::move(bytes);
    return *this;
  }
  // Sets PSH when there is a payload, as a sending kernel does.
  PacketBuilder& payload(std::vector<uint8_t> bytes) {
    payload_ = std::move(bytes);
    if (!payload_.empty()) spec_.flags |= wire::tcp_flags::PSH;
    return *this;
  }
  // n bytes of a recognisable pattern, starting at `first`.
  PacketBuilder& data(size_t n, uint8_t first = 'a') {
    std::vector<uint8_t> b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i % 26);
    return payload(std::move(b));
  }
  std::vector<uint8_t> build() const {
    wire::TcpSegmentSpec s = spec_;
    s.options = options_;
    s.payload = payload_;
    return wire::build_tcp_packet(s);
  }
  operator std::vector<uint8_t>() const { return build(); }  // NOLINT: rows read as packets

 private:
  wire::TcpSegmentSpec spec_;
  std::vector<uint8_t> options_;
  std::vector<uint8_t> payload_;
};

// "198.18.0.2:40000 > 198.18.0.100:80 [S.] seq 1 ack 2 win 3 len 4 opts 20 csum ok", or why the
// bytes do not parse.
inline std::string describe(const std::vector<uint8_t>& packet) {
  std::vector<uint8_t> copy = packet;
  auto r = wire::parse_tcp_packet(copy, /*verify_tcp_checksum=*/false);
  if (!r) return "unparsable (" + std::string(wire::to_string(r.error())) + ")";
  std::ostringstream o;
  uint8_t f = r->tcp.flags();
  namespace tf = wire::tcp_flags;
  std::string flags;
  if (f & tf::SYN) flags += 'S';
  if (f & tf::FIN) flags += 'F';
  if (f & tf::RST) flags += 'R';
  if (f & tf::PSH) flags += 'P';
  if (f & tf::ACK) flags += '.';
  o << r->src().to_string() << " > " << r->dst().to_string() << " [" << flags << "] seq "
    << r->tcp.seq().raw() << " ack " << r->tcp.ack().raw() << " win " << r->tcp.window() << " len "
    << r->tcp.payload().size() << " opts " << r->tcp.options().size() << " csum "
    << (r->tcp.checksum_ok(r->ip.src(), r->ip.dst()) ? "ok" : "BAD");
  return o.str();
}

}  // namespace us::test
