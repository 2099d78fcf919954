// TCP options: MSS (RFC 793 §3.1 / RFC 9293 §3.7.1), window scale and timestamps (RFC 7323),
// SACK-permitted and SACK (RFC 2018). Parsing into a value, in-place rewrites that keep the header
// length and the checksum, and an encoder for fabricated SYN/ACKs.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "wire/ipv4.hpp"
#include "wire/seq.hpp"
#include "wire/tcp.hpp"

namespace us::wire {

namespace tcp_opt {
constexpr uint8_t EOL = 0, NOP = 1, MSS = 2, WSCALE = 3, SACK_PERMITTED = 4, SACK = 5,
                  TIMESTAMP = 8;
}  // namespace tcp_opt

struct SackBlock {
  SeqNum left;
  SeqNum right;
  friend constexpr bool operator==(const SackBlock&, const SackBlock&) = default;
};

struct TcpOptions {
  std::optional<uint16_t> mss;
  // As received: RFC 7323 §2.3 says a shift above 14 is used as 14; that clamp is the user's.
  std::optional<uint8_t> wscale;
  bool sack_permitted = false;
  std::optional<std::pair<uint32_t, uint32_t>> timestamp;  // TSval, TSecr
  std::array<SackBlock, 4> sack{};
  uint8_t sack_count = 0;
};

// Parsing stops at EOL; unknown kinds are skipped by their length. A length byte that is missing,
// < 2, runs past the end, or does not match a known kind's fixed size is BadOption.
Result<TcpOptions, ParseError> parse_options(std::span<const uint8_t> options);

// In-place rewrites: the header length never changes and the TCP checksum is fixed incrementally.
// On malformed options they change nothing (and return false).

// Overwrites every timestamp option with NOPs; returns whether one was found.
bool strip_timestamps(TcpView& tcp);
// Each SACK edge e becomes offset.apply(e). To map client-facing to kernel sequence space, pass
// the inverse of the kernel->client offset (SeqOffset::inverse()).
void translate_sack(TcpView& tcp, SeqOffset offset);
// Lowers an MSS option above max_mss to max_mss; returns whether it changed.
bool clamp_mss(TcpView& tcp, uint16_t max_mss);

// Linux SYN layout (MSS, SACK-perm+TS, NOP+wscale), NOP-aligned so that the 32-bit fields fall on
// 4-byte boundaries, total a multiple of 4. SACK blocks that would not fit in 40 bytes are dropped.
std::vector<uint8_t> encode_options(const TcpOptions& opts);

}  // namespace us::wire
