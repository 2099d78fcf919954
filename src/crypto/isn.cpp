#include "crypto/isn.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

namespace us::crypto {

ServerIsn::ServerIsn(const Key& master, wire::Endpoint advertised)
    : key_(derive_key(master, "understudy isn v2")), advertised_(advertised) {}

uint32_t ServerIsn::operator()(const ConnKey& k, uint8_t low) const {
  uint8_t msg[20];
  auto put32 = [&](int at, uint32_t v) {
    for (int i = 0; i < 4; ++i) msg[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
  };
  put32(0, k.ip.v);
  put32(4, k.port);
  put32(8, k.isn);
  put32(12, advertised_.ip.v ^ advertised_.port);
  put32(16, low);
  uint8_t mac[32];
  unsigned len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), msg, sizeof msg, mac, &len);
  return (uint32_t{mac[0]} << 24) | (uint32_t{mac[1]} << 16) | (uint32_t{mac[2]} << 8) | low;
}

}  // namespace us::crypto
