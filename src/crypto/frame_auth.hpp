// Authenticated frames between the two nodes (DESIGN.md section 5): heartbeats, relayed client
// packets and the replication stream. Integrity only, no secrecy: a LAN host must not be able to
// inject or alter a frame. Replay protection is the caller's: it must check `counter`.
//
// Layout: [u8 version=1][u8 type][u16 reserved=0][u64 counter BE][u32 payload_len BE][payload][tag]
// tag = first 16 bytes of HMAC-SHA256(key, every preceding byte of the frame), or, for Mac::Gmac,
// AES-256-GCM's tag over those bytes as associated data, with IV = 4 zero bytes + the counter.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include <openssl/types.h>

#include "common/result.hpp"
#include "crypto/key.hpp"

namespace us::crypto {

constexpr size_t kFrameHeader = 16, kFrameTag = 16;
constexpr uint8_t kFrameVersion = 1;

struct OpenedFrame {
  uint8_t type;
  uint64_t counter;
  std::span<const uint8_t> payload;  // points into the frame passed to open()
};

enum class AuthError {
  TooShort,    // fewer than kFrameHeader + kFrameTag bytes
  BadVersion,  // version != 1 or reserved != 0
  BadLength,   // payload_len disagrees with the frame's size
  BadTag,      // forged, corrupted, or sealed with another key
};
const char* to_string(AuthError);

enum class Mac {
  HmacSha256,
  // GMAC: 8-12x faster than HMAC-SHA256 over the replication stream's large frames (AES-NI and
  // carry-less multiply; docs/PERFORMANCE.md), but a counter sealed twice under one key lets an
  // attacker forge frames. Only for keys fresh per session whose counters never repeat (the
  // replication channel's); datagram keys outlive a restart and keep HMAC.
  Gmac,
};

// Not thread-safe: use one FrameAuth per thread (copies are cheap and independent).
class FrameAuth {
 public:
  explicit FrameAuth(const Key& key, Mac mac = Mac::HmacSha256);
  FrameAuth(const FrameAuth& other);
  FrameAuth& operator=(const FrameAuth& other);
  FrameAuth(FrameAuth&&) noexcept = default;
  FrameAuth& operator=(FrameAuth&&) noexcept = default;
  ~FrameAuth() = default;

  // Appends one frame to out. Payloads longer than UINT32_MAX are a caller bug (aborts).
  void seal(std::vector<uint8_t>& out, uint8_t type, uint64_t counter,
            std::span<const uint8_t> payload) const;

  // frame must be exactly one frame. The tag is compared in constant time.
  Result<OpenedFrame, AuthError> open(std::span<const uint8_t> frame) const;

  // Total frame size once kFrameHeader bytes are known (nullopt before), for stream reassembly.
  // Nothing is authenticated yet: a stream reader must bound this before buffering that much.
  static std::optional<size_t> frame_size(std::span<const uint8_t> prefix);

 private:
  struct CtxFree {
    void operator()(EVP_MAC_CTX* ctx) const;
    void operator()(EVP_CIPHER_CTX* ctx) const;
  };
  using CtxPtr = std::unique_ptr<EVP_MAC_CTX, CtxFree>;
  using CipherPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;
  Mac mac_ = Mac::HmacSha256;
  CipherPtr gcm_;  // Mac::Gmac: the key schedule, set once

  // HMAC state with the key already absorbed, and the one each frame is tagged with: reset to
  // the keyed state per frame (EVP_MAC_init with no key), not duplicated, so a frame costs no
  // allocation (they showed as malloc/free beside SHA-256 in the backup's profile).
  CtxPtr keyed_;
  mutable CtxPtr work_;
  // The tag of `data` (a frame without its tag; the counter is read from its header).
  void tag(std::span<const uint8_t> data, uint8_t (&out)[32]) const;
};

}  // namespace us::crypto
