// Internet checksum (RFC 1071) and its incremental update (RFC 1624). All values in host order:
// the 16-bit words are read big-endian, so the result is stored with store_be16.
#pragma once
#include <cstdint>
#include <span>

namespace us::wire {

// One's-complement sum (not yet complemented) of the big-endian 16-bit words of data, added to
// sum; chain calls to cover a pseudo-header and a segment. An odd final byte is padded with zero
// (RFC 1071 §4.1), so only the last chunk of a chained sum may be odd.
uint32_t csum_accumulate(std::span<const uint8_t> data, uint32_t sum = 0);

// Folds the carries back in and complements: the value for the checksum field.
uint16_t csum_fold(uint32_t sum);

// csum_fold(csum_accumulate(data)). Over a header that includes a correct checksum field, this is
// 0.
uint16_t internet_checksum(std::span<const uint8_t> data);

// RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'). Unlike eqn. 2 it never yields 0xFFFF for a non-zero
// header, so it agrees bit for bit with a full recomputation.
uint16_t csum_replace16(uint16_t check, uint16_t old_val, uint16_t new_val);
uint16_t csum_replace32(uint16_t check, uint32_t old_val, uint32_t new_val);

}  // namespace us::wire
