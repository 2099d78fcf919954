#include "crypto/request_id.hpp"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <array>

namespace us::crypto {

RequestIdMac::RequestIdMac(const Key& master)
    : key_(derive_key(master, "understudy request id v1")) {}

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
  unsigned len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), msg.data(), msg.size(), mac, &len);
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
