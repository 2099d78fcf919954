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

  // The first 3 bytes, big-endian, of HMAC-SHA256(derive_key(master, "understudy isn v2"),
  // ip || port || isn || (advertised ip ^ advertised port) || low), each a 32-bit big-endian
  // word, then `low`: what the client's SYN offered (packet/syn_offer.hpp), so that the ISN is a
  // SYN cookie the client's ACK returns. 24 bits of MAC: a blind guess succeeds once in 2^24.
  uint32_t operator()(const ConnKey& k, uint8_t low) const;

 private:
  Key key_;
  wire::Endpoint advertised_;
};

}  // namespace us::crypto
