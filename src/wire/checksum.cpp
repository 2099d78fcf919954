#include "wire/checksum.hpp"

#include <bit>
#include <cstring>

namespace us::wire {

namespace {

// End-around carry (RFC 1071 §2(B)): adding the high part back preserves the sum modulo 0xFFFF.
uint32_t fold_to_16(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum);
}

}  // namespace

uint32_t csum_accumulate(std::span<const uint8_t> data, uint32_t sum) {
  // The bulk is summed as native 32-bit words (two accumulators, eight bytes a step): the sum
  // folds to the same 16 bits as one of 16-bit words, byte-swapped on a little-endian host
  // (RFC 1071 section 2(B)). At a few GB/s it lets the TUN's 64 KiB segments be split and
  // checksummed here (netdev.hpp) for less than the per-packet reads they replace.
  const uint8_t* p = data.data();
  size_t n = data.size();
  uint64_t a = 0, b = 0;
  for (; n >= 8; n -= 8, p += 8) {
    uint32_t w[2];
    std::memcpy(w, p, 8);
    a += w[0];
    b += w[1];
  }
  uint32_t native = fold_to_16(a + b);
  if constexpr (std::endian::native == std::endian::little)
    native = ((native & 0xff) << 8) | (native >> 8);
  uint64_t acc = uint64_t{sum} + native;
  for (; n >= 2; n -= 2, p += 2) acc += (uint32_t{p[0]} << 8) | p[1];
  if (n) acc += uint32_t{p[0]} << 8;
  return fold_to_16(acc);
}

uint16_t csum_fold(uint32_t sum) {
  return static_cast<uint16_t>(~fold_to_16(sum));
}

uint16_t internet_checksum(std::span<const uint8_t> data) {
  return csum_fold(csum_accumulate(data));
}

uint16_t csum_replace16(uint16_t check, uint16_t old_val, uint16_t new_val) {
  uint32_t sum =
      uint32_t{static_cast<uint16_t>(~check)} + static_cast<uint16_t>(~old_val) + new_val;
  return csum_fold(sum);
}

uint16_t csum_replace32(uint16_t check, uint32_t old_val, uint32_t new_val) {
  uint32_t sum = uint32_t{static_cast<uint16_t>(~check)};
  sum += static_cast<uint16_t>(~(old_val >> 16));
  sum += static_cast<uint16_t>(~old_val);
  sum += new_val >> 16;
  sum += new_val & 0xffff;
  return csum_fold(sum);
}

}  // namespace us::wire
