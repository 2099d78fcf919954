#include "crypto/frame_auth.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace us::crypto {

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "understudy: fatal: %s failed\n", what);
  std::abort();
}

void put_be(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

uint64_t get_be(std::span<const uint8_t> in, size_t at, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = 0; i < bytes; ++i) v = (v << 8) | in[at + i];
  return v;
}

constexpr size_t kOffVersion = 0, kOffType = 1, kOffReserved = 2, kOffCounter = 4, kOffLength = 12;

}  // namespace

const char* to_string(AuthError e) {
  switch (e) {
    case AuthError::TooShort:
      return "frame too short";
    case AuthError::BadVersion:
      return "bad frame version";
    case AuthError::BadLength:
      return "frame length mismatch";
    case AuthError::BadTag:
      return "bad frame tag";
  }
  return "unknown auth error";
}

void FrameAuth::CtxFree::operator()(EVP_MAC_CTX* ctx) const {
  EVP_MAC_CTX_free(ctx);
}
void FrameAuth::CtxFree::operator()(EVP_CIPHER_CTX* ctx) const {
  EVP_CIPHER_CTX_free(ctx);
}

FrameAuth::FrameAuth(const Key& key, Mac kind) : mac_(kind) {
  if (kind == Mac::Gmac) {
    gcm_.reset(EVP_CIPHER_CTX_new());
    if (!gcm_ || key.size() != 32 ||
        EVP_EncryptInit_ex(gcm_.get(), EVP_aes_256_gcm(), nullptr, key.data(), nullptr) != 1)
      die("AES-256-GCM init");
    return;
  }
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) die("EVP_MAC_fetch(HMAC)");
  keyed_.reset(EVP_MAC_CTX_new(mac));
  EVP_MAC_free(mac);  // the context holds its own reference
  if (!keyed_) die("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(keyed_.get(), key.data(), key.size(), params) != 1) die("EVP_MAC_init");
  work_.reset(EVP_MAC_CTX_dup(keyed_.get()));
  if (!work_) die("EVP_MAC_CTX_dup");
}

FrameAuth::FrameAuth(const FrameAuth& other) : mac_(other.mac_) {
  if (mac_ == Mac::Gmac) {
    gcm_.reset(EVP_CIPHER_CTX_new());
    if (!gcm_ || EVP_CIPHER_CTX_copy(gcm_.get(), other.gcm_.get()) != 1) die("EVP_CIPHER_CTX_copy");
    return;
  }
  keyed_.reset(EVP_MAC_CTX_dup(other.keyed_.get()));
  work_.reset(EVP_MAC_CTX_dup(other.keyed_.get()));
  if (!keyed_ || !work_) die("EVP_MAC_CTX_dup");
}

FrameAuth& FrameAuth::operator=(const FrameAuth& other) {
  if (this != &other) *this = FrameAuth(other);
  return *this;
}

void FrameAuth::tag(std::span<const uint8_t> data, uint8_t (&out)[32]) const {
  if (mac_ == Mac::Gmac) {
    // The whole frame is associated data; nothing is encrypted. A new IV per frame keeps the
    // key schedule.
    if (data.size() > INT_MAX) die("AES-256-GMAC: frame over 2 GiB");
    uint8_t iv[12] = {};
    std::memcpy(iv + 4, data.data() + kOffCounter, 8);
    int n = 0;
    if (EVP_EncryptInit_ex(gcm_.get(), nullptr, nullptr, nullptr, iv) != 1 ||
        EVP_EncryptUpdate(gcm_.get(), nullptr, &n, data.data(), static_cast<int>(data.size())) !=
            1 ||
        EVP_EncryptFinal_ex(gcm_.get(), nullptr, &n) != 1 ||
        EVP_CIPHER_CTX_ctrl(gcm_.get(), EVP_CTRL_GCM_GET_TAG, 16, out) != 1)
      die("AES-256-GMAC");
    return;
  }
  size_t len = 0;
  // No key: HMAC starts again from the key it holds.
  if (EVP_MAC_init(work_.get(), nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(work_.get(), data.data(), data.size()) != 1 ||
      EVP_MAC_final(work_.get(), out, &len, sizeof out) != 1 || len != sizeof out)
    die("HMAC-SHA256");
}

void FrameAuth::seal(std::vector<uint8_t>& out, uint8_t type, uint64_t counter,
                     std::span<const uint8_t> payload) const {
  if (payload.size() > UINT32_MAX) die("FrameAuth::seal: payload over 4 GiB");
  const size_t start = out.size();
  out.reserve(start + kFrameHeader + payload.size() + kFrameTag);
  out.push_back(kFrameVersion);
  out.push_back(type);
  put_be(out, 0, 2);
  put_be(out, counter, 8);
  put_be(out, payload.size(), 4);
  out.insert(out.end(), payload.begin(), payload.end());
  uint8_t mac[32];
  tag(std::span<const uint8_t>(out).subspan(start), mac);
  out.insert(out.end(), mac, mac + kFrameTag);
}

Result<OpenedFrame, AuthError> FrameAuth::open(std::span<const uint8_t> frame) const {
  if (frame.size() < kFrameHeader + kFrameTag) return Err{AuthError::TooShort};
  // Reserved bits are part of the format version: a future format may use them.
  if (frame[kOffVersion] != kFrameVersion || get_be(frame, kOffReserved, 2) != 0)
    return Err{AuthError::BadVersion};
  const size_t payload_len = get_be(frame, kOffLength, 4);
  if (frame.size() != kFrameHeader + payload_len + kFrameTag) return Err{AuthError::BadLength};
  const size_t body = kFrameHeader + payload_len;
  uint8_t mac[32];
  tag(frame.first(body), mac);
  if (CRYPTO_memcmp(mac, frame.data() + body, kFrameTag) != 0) return Err{AuthError::BadTag};
  return OpenedFrame{frame[kOffType], get_be(frame, kOffCounter, 8),
                     frame.subspan(kFrameHeader, payload_len)};
}

std::optional<size_t> FrameAuth::frame_size(std::span<const uint8_t> prefix) {
  if (prefix.size() < kFrameHeader) return std::nullopt;
  return kFrameHeader + get_be(prefix, kOffLength, 4) + kFrameTag;
}

}  // namespace us::crypto
