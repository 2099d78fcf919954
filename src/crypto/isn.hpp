// The server's initial sequence number for a client connection (DESIGN.md invariant I3): both
// nodes must pick the same ISN for the same connection without talking, and a client must not be
// able to predict it. So it is a keyed hash of what both nodes see alike: the connection's name
// (I4: client address, port and ISN) and the advertised endpoint.
#pragma once
#include <cstdint>

#include "core/vocabulary.hpp"
#include "crypto/key.hpp"
#include "wire/address.hpp"

namespace us::crypto {

class ServerIsn {
 public:
  // The key is derived from the pre-shared master key, so both nodes hold the same one.
  ServerIsn(const Key& master, wire::Endpoint advertised);

  // First 4 bytes, big-endian, of HMAC-SHA256(derive_key(master, "understudy isn v1"),
  // ip || port || isn || (advertised ip ^ advertised port)), each a 32-bit big-endian word.
  uint32_t operator()(const ConnKey& k) const;

 private:
  Key key_;
  wire::Endpoint advertised_;
};

}  // namespace us::crypto
