// What a client's SYN offered (MSS, window scale, SACK), packed into the 8 low bits of the
// client-facing ISN. The rest of the ISN is a keyed hash (crypto/isn.hpp), so the ISN is a SYN
// cookie: a node that answered a SYN without keeping anything (PacketLayer, under a SYN flood)
// learns from the client's completing ACK both that the handshake is genuine and what to tell
// its kernel about the client. Every connection's ISN carries the bits, cookie or not, so both
// nodes agree on it whichever answered the SYN (I3).
#pragma once
#include <cstdint>
#include <optional>

#include "wire/tcp_options.hpp"

namespace us::packet {

struct SynOffer {
  uint16_t mss = 536;             // rounded down to one of eight common values
  std::optional<uint8_t> wscale;  // 0-14; none: the client did not offer scaling
  bool sack = false;
  friend bool operator==(const SynOffer&, const SynOffer&) = default;
};

constexpr uint32_t kOfferBits = 8;
constexpr uint32_t kOfferMask = (1u << kOfferBits) - 1;

// The offer of a SYN with these options (nullopt: none could be parsed, RFC 9293's defaults).
SynOffer offer_of(const std::optional<wire::TcpOptions>& opts);
// 3 bits of MSS index, 4 of window scale (15: none), 1 of SACK-permitted.
uint8_t encode_offer(const SynOffer& o);
SynOffer decode_offer(uint8_t bits);

}  // namespace us::packet
