#include "message/regeneration.hpp"

#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace us::message {
namespace {

// The process's hash key, expanded once: every StreamHash starts as a copy of it.
const EVP_CIPHER_CTX* keyed_template() {
  static const CipherPtr keyed = [] {
    uint8_t key[32];
    CipherPtr c(EVP_CIPHER_CTX_new());
    if (!c || RAND_bytes(key, sizeof key) != 1 ||
        EVP_EncryptInit_ex(c.get(), EVP_aes_256_gcm(), nullptr, key, nullptr) != 1)
      std::abort();
    OPENSSL_cleanse(key, sizeof key);
    return c;
  }();
  return keyed.get();
}

// Where the value of the Date header sits in a reply head, if anywhere: the one header nginx
// changes between two identical replies. An IMF-fixdate is always 29 bytes (RFC 9110 5.6.7), so
// the range is known even when the head we hold ends inside it.
std::pair<size_t, size_t> date_value_range(std::string_view head) {
  auto end = head.find("\r\n\r\n");
  auto pos = head.find("\r\nDate: ");
  if (pos == std::string_view::npos || (end != std::string_view::npos && pos > end)) return {0, 0};
  return {pos + 8, pos + 8 + 29};
}

std::string printable(std::string_view bytes) {
  std::string out;
  for (char ch : bytes) {
    if (ch >= 0x20 && ch < 0x7f) {
      out.push_back(ch);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(ch));
      out += buf;
    }
  }
  return out;
}
}  // namespace

StreamHash::StreamHash() : ctx_(EVP_CIPHER_CTX_new()) {
  static constexpr uint8_t kIv[12] = {};  // one key per process, values never leave it
  if (!ctx_ || EVP_CIPHER_CTX_copy(ctx_.get(), keyed_template()) != 1 ||
      EVP_EncryptInit_ex(ctx_.get(), nullptr, nullptr, nullptr, kIv) != 1)
    std::abort();
}

void StreamHash::add(std::span<const uint8_t> bytes) {
  // As GCM's associated data: GHASH only, fed in any pieces (OpenSSL carries a partial block).
  while (!bytes.empty()) {
    size_t n = std::min<size_t>(bytes.size(), INT_MAX);
    int out = 0;
    if (EVP_EncryptUpdate(ctx_.get(), nullptr, &out, bytes.data(), static_cast<int>(n)) != 1)
      std::abort();
    bytes = bytes.subspan(n);
  }
}

std::array<uint8_t, 16> StreamHash::value() const {
  std::array<uint8_t, 16> tag{};
  CipherPtr copy(EVP_CIPHER_CTX_new());
  int out = 0;
  if (!copy || EVP_CIPHER_CTX_copy(copy.get(), ctx_.get()) != 1 ||
      EVP_EncryptFinal_ex(copy.get(), nullptr, &out) != 1 ||
      EVP_CIPHER_CTX_ctrl(copy.get(), EVP_CTRL_GCM_GET_TAG, 16, tag.data()) != 1)
    std::abort();
  return tag;
}

void PartialReply::add(std::span<const uint8_t> bytes) {
  size_t to_head = std::min(bytes.size(), kVerifyHead - std::min(kVerifyHead, head.size()));
  head.append(reinterpret_cast<const char*>(bytes.data()), to_head);
  if (to_head < bytes.size()) {
    if (!tail) tail.emplace();
    tail->add(bytes.subspan(to_head));
  }
  length += bytes.size();
}

bool Regeneration::consume(std::span<const uint8_t> bytes) {
  size_t from = seen.head.size();
  seen.add(bytes);
  remaining -= std::min<uint64_t>(remaining, bytes.size());
  size_t n = std::min(seen.head.size(), expected.head.size());
  auto [db, de] = date_value_range(expected.head);
  for (size_t i = from; i < n; ++i) {
    bool masked = i >= db && i < de;
    if (!masked && seen.head[i] != expected.head[i]) {
      size_t at = i < 24 ? 0 : i - 24;
      mismatch = "at byte " + std::to_string(i) + ": held \"" +
                 printable(std::string_view(expected.head).substr(at, 64)) + "\" vs new \"" +
                 printable(std::string_view(seen.head).substr(at, 64)) + "\"";
      return false;
    }
  }
  if (remaining == 0 && expected.tail) {
    if (!seen.tail || seen.tail->value() != expected.tail->value()) {
      mismatch = "in the bytes after the first 64 KiB (their hashes differ)";
      return false;
    }
  }
  return true;
}

}  // namespace us::message
