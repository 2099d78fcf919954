// Request ids for exactly-once back-ends (node.request_id_header; docs/MESSAGE_LAYER.md, "The
// client's identity"): both nodes must give the same request the same id without talking, and a
// client must not be able to compute one. So, like the ISN (isn.hpp), it is a keyed hash of what
// both nodes see alike: the connection's name (I4), where its streams began, the request's index.
#pragma once
#include <openssl/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "core/vocabulary.hpp"
#include "crypto/key.hpp"
#include "wire/seq.hpp"

namespace us::crypto {

class RequestIdMac {
 public:
  // The key is derived from the pre-shared master key, so both nodes hold the same one.
  explicit RequestIdMac(const Key& master);

  // 32 lower-case hex digits: the first 16 bytes of HMAC-SHA256(derive_key(master, "understudy
  // request id v1"), ip || port || isn || start || index), big-endian, 4+2+4+4+8 bytes. `start`
  // is the client seq of the request stream's first byte: a connection protected again after a
  // rejoin restarts its indices at 0 there, and must not repeat an id.
  std::string operator()(const ConnKey& k, wire::SeqNum start, uint64_t index) const;

 private:
  // HMAC state with the key absorbed, reset to it per id (EVP_MAC_init with no key), as
  // FrameAuth does: HMAC() fetched SHA-256 on every call (2.3 us an id; 0.3 us this way).
  // Shared by copies: the daemon has one thread.
  std::shared_ptr<EVP_MAC_CTX> ctx_;
};

}  // namespace us::crypto
