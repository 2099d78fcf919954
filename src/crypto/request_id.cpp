#include "crypto/request_id.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>

#include <array>
#include <cstdio>
#include <cstdlib>

namespace us::crypto {
namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "understudy: fatal: %s failed\n", what);
  std::abort();
}

}  // namespace

RequestIdMac::RequestIdMac(const Key& master) {
  const Key key = derive_key(master, "understudy request id v1");
  EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
  if (mac == nullptr) die("EVP_MAC_fetch(HMAC)");
  ctx_.reset(EVP_MAC_CTX_new(mac), EVP_MAC_CTX_free);
  EVP_MAC_free(mac);  // the context holds its own reference
  if (!ctx_) die("EVP_MAC_CTX_new");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                         OSSL_PARAM_construct_end()};
  if (EVP_MAC_init(ctx_.get(), key.data(), key.size(), params) != 1) die("EVP_MAC_init");
}

std::string RequestIdMac::operator()(const ConnKey& k, wire::SeqNum start, uint64_t index) const {
  std::array<uint8_t, 22> msg{};
  auto put = [&](size_t at, uint64_t v, size_t len) {
    for (size_t i = 0; i < len; ++i) msg[at + i] = static_cast<uint8_t>(v >> (8 * (len - 1 - i)));
  };
  put(0, k.ip.v, 4);
  put(4, k.port, 2);
  put(6, k.isn, 4);
  put(10, start.raw(), 4);
  put(14, index, 8);
  uint8_t mac[32];
  size_t len = 0;
  // No key: HMAC starts again from the key the context holds.
  if (EVP_MAC_init(ctx_.get(), nullptr, 0, nullptr) != 1 ||
      EVP_MAC_update(ctx_.get(), msg.data(), msg.size()) != 1 ||
      EVP_MAC_final(ctx_.get(), mac, &len, sizeof mac) != 1 || len != sizeof mac)
    die("HMAC-SHA256");
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id;
  id.reserve(32);
  for (size_t i = 0; i < 16; ++i) {
    id.push_back(kDigits[mac[i] >> 4]);
    id.push_back(kDigits[mac[i] & 0xf]);
  }
  return id;
}

}  // namespace us::crypto
