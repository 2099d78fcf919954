// Pre-shared key between the two nodes (DESIGN.md section 5) and per-purpose keys derived from it.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace us::crypto {

using Key = std::array<uint8_t, 32>;

// 32 bytes from RAND_bytes as 64 lowercase hex characters. Aborts if the CSPRNG fails: a
// predictable key is worse than no daemon.
std::string generate_key_hex();

// Exactly 64 hex characters (either case); surrounding whitespace and newlines are ignored.
// Fails with a message saying what is wrong (length, offending character and position).
Result<Key, std::string> parse_key(std::string_view text);

// HMAC-SHA256(master, label || context). Labels are fixed strings chosen by the caller; since the
// concatenation is unframed, two labels must never be prefixes of each other plus context.
Key derive_key(const Key& master, std::string_view label, std::span<const uint8_t> context = {});

}  // namespace us::crypto
