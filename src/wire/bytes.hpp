// Big-endian (network order, RFC 791 Appendix B) loads and stores over byte spans.
// Callers check bounds first: these are the building blocks of the views, which only run over
// buffers that parse_* has already validated.
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>

namespace us::wire {

inline uint16_t load_be16(std::span<const uint8_t> b, size_t off) {
  return static_cast<uint16_t>((uint16_t{b[off]} << 8) | b[off + 1]);
}

inline uint32_t load_be32(std::span<const uint8_t> b, size_t off) {
  return (uint32_t{b[off]} << 24) | (uint32_t{b[off + 1]} << 16) | (uint32_t{b[off + 2]} << 8) |
         b[off + 3];
}

inline void store_be16(std::span<uint8_t> b, size_t off, uint16_t v) {
  b[off] = static_cast<uint8_t>(v >> 8);
  b[off + 1] = static_cast<uint8_t>(v);
}

inline void store_be32(std::span<uint8_t> b, size_t off, uint32_t v) {
  b[off] = static_cast<uint8_t>(v >> 24);
  b[off + 1] = static_cast<uint8_t>(v >> 16);
  b[off + 2] = static_cast<uint8_t>(v >> 8);
  b[off + 3] = static_cast<uint8_t>(v);
}

}  // namespace us::wire
