#include "crypto/key.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdio>
#include <cstdlib>

namespace us::crypto {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "understudy: fatal: %s failed\n", what);
  std::abort();
}

}  // namespace

std::string generate_key_hex() {
  Key key{};
  if (RAND_bytes(key.data(), static_cast<int>(key.size())) != 1) die("RAND_bytes");
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(key.size() * 2);
  for (uint8_t b : key) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

Result<Key, std::string> parse_key(std::string_view text) {
  while (!text.empty() && is_space(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_space(text.back())) text.remove_suffix(1);
  if (text.empty()) return Err{std::string("key is empty")};
  for (size_t i = 0; i < text.size(); ++i) {
    if (hex_value(text[i]) < 0) {
      unsigned char c = static_cast<unsigned char>(text[i]);
      char shown[8];
      if (c >= 0x21 && c < 0x7f)
        std::snprintf(shown, sizeof shown, "'%c'", c);
      else
        std::snprintf(shown, sizeof shown, "0x%02x", c);
      return Err{std::string("key has a non-hex character ") + shown + " at position " +
                 std::to_string(i)};
    }
  }
  if (text.size() != Key{}.size() * 2)
    return Err{"key must be 64 hex characters (32 bytes), got " + std::to_string(text.size())};
  Key key{};
  for (size_t i = 0; i < key.size(); ++i)
    key[i] = static_cast<uint8_t>((hex_value(text[2 * i]) << 4) | hex_value(text[2 * i + 1]));
  return key;
}

Key derive_key(const Key& master, std::string_view label, std::span<const uint8_t> context) {
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) die("EVP_MAC_fetch(HMAC)");
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_new(mac);
  if (ctx == nullptr) die("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  Key out{};
  size_t out_len = 0;
  if (EVP_MAC_init(ctx, master.data(), master.size(), params) != 1 ||
      EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(label.data()), label.size()) !=
          1 ||
      EVP_MAC_update(ctx, context.data(), context.size()) != 1 ||
      EVP_MAC_final(ctx, out.data(), &out_len, out.size()) != 1 || out_len != out.size())
    die("HMAC-SHA256");
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  return out;
}

}  // namespace us::crypto
