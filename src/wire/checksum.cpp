#include "wire/checksum.hpp"

namespace us::wire {

namespace {

// End-around carry (RFC 1071 §2(B)): adding the high part back preserves the sum modulo 0xFFFF.
uint32_t fold_to_16(uint64_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint32_t>(sum);
}

}  // namespace

uint32_t csum_accumulate(std::span<const uint8_t> data, uint32_t sum) {
  // 64-bit accumulator: no carry can be lost even for a 64 KiB packet on top of a large sum.
  uint64_t acc = sum;
  size_t i = 0;
  for (; i + 1 < data.size(); i += 2) acc += (uint32_t{data[i]} << 8) | data[i + 1];
  if (i < data.size()) acc += uint32_t{data[i]} << 8;
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
