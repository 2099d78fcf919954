#include "packet/syn_offer.hpp"

#include <algorithm>
#include <array>

namespace us::packet {
namespace {

// Ethernet with and without common tunnel or PPPoE overheads; 536 is RFC 9293's default. A
// client is told at most its own MSS rounded down, so its segments always fit.
constexpr std::array<uint16_t, 8> kMss = {536, 1200, 1300, 1360, 1400, 1440, 1452, 1460};
constexpr uint8_t kNoScale = 15;

}  // namespace

SynOffer offer_of(const std::optional<wire::TcpOptions>& opts) {
  SynOffer o;
  if (!opts) return o;
  uint16_t mss = opts->mss.value_or(536);
  for (uint16_t m : kMss)
    if (m <= mss) o.mss = m;
  // RFC 7323 2.3: a larger shift is used as 14.
  if (opts->wscale) o.wscale = std::min<uint8_t>(*opts->wscale, 14);
  o.sack = opts->sack_permitted;
  return o;
}

uint8_t encode_offer(const SynOffer& o) {
  auto at = std::find(kMss.begin(), kMss.end(), o.mss);
  auto index = static_cast<uint8_t>(at == kMss.end() ? 0 : at - kMss.begin());
  uint8_t ws = o.wscale ? std::min<uint8_t>(*o.wscale, 14) : kNoScale;
  return static_cast<uint8_t>(index << 5 | ws << 1 | (o.sack ? 1 : 0));
}

SynOffer decode_offer(uint8_t bits) {
  SynOffer o;
  o.mss = kMss[bits >> 5];
  uint8_t ws = (bits >> 1) & 0x0f;
  if (ws != kNoScale) o.wscale = ws;
  o.sack = (bits & 1) != 0;
  return o;
}

}  // namespace us::packet
