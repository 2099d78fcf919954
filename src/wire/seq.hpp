// TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 793 §3.3, RFC 1982 serial
// arithmetic). Use SeqNum for every sequence or acknowledgement number so that nothing compares
// bare uint32_t values across the wrap. Two numbers more than 2^31 apart have no defined order;
// TCP windows never get there (RFC 7323 §2.3 caps the window at 2^30).
#pragma once
#include <cstdint>

namespace us::wire {

class SeqNum {
 public:
  constexpr SeqNum() = default;
  constexpr explicit SeqNum(uint32_t v) : v_(v) {}
  constexpr uint32_t raw() const { return v_; }

  // Unsigned arithmetic wraps modulo 2^32, which is exactly sequence-space arithmetic.
  constexpr SeqNum operator+(uint32_t n) const { return SeqNum(v_ + n); }
  constexpr SeqNum operator-(uint32_t n) const { return SeqNum(v_ - n); }
  constexpr SeqNum& operator+=(uint32_t n) {
    v_ += n;
    return *this;
  }
  constexpr SeqNum& operator-=(uint32_t n) {
    v_ -= n;
    return *this;
  }

  // Signed distance a - b modulo 2^32 (C++20 defines the narrowing as modular).
  friend constexpr int32_t operator-(SeqNum a, SeqNum b) {
    return static_cast<int32_t>(a.v_ - b.v_);
  }

  friend constexpr bool operator==(SeqNum a, SeqNum b) = default;
  friend constexpr bool operator<(SeqNum a, SeqNum b) { return (a - b) < 0; }
  friend constexpr bool operator<=(SeqNum a, SeqNum b) { return (a - b) <= 0; }
  friend constexpr bool operator>(SeqNum a, SeqNum b) { return (a - b) > 0; }
  friend constexpr bool operator>=(SeqNum a, SeqNum b) { return (a - b) >= 0; }

  static constexpr SeqNum max(SeqNum a, SeqNum b) { return a < b ? b : a; }
  static constexpr SeqNum min(SeqNum a, SeqNum b) { return a < b ? a : b; }

 private:
  uint32_t v_ = 0;
};

// Per-connection offset between two sequence spaces: to = from + offset (mod 2^32). Used to map
// the kernel's ISN onto the client-facing ISN that both nodes share (DESIGN I3).
struct SeqOffset {
  uint32_t v = 0;

  static constexpr SeqOffset between(SeqNum to, SeqNum from) {
    return SeqOffset{to.raw() - from.raw()};
  }
  constexpr SeqNum apply(SeqNum from) const { return from + v; }
  constexpr SeqNum unapply(SeqNum to) const { return to - v; }
  // The offset for the opposite direction: inverse().apply(x) == unapply(x).
  constexpr SeqOffset inverse() const { return SeqOffset{0u - v}; }

  friend constexpr bool operator==(SeqOffset a, SeqOffset b) = default;
};

}  // namespace us::wire
