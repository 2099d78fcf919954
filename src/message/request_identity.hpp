// What the web server learns about each request beyond the client's bytes: the client's address
// (node.client_address) and an id for exactly-once back-ends (node.request_id_header). Read
// docs/MESSAGE_LAYER.md, "The client's identity", first.
//
// Everything here is a function of what both nodes know alike: the connection's name (I4), the
// client seq its streams began at, the request's index on it, the advertised endpoint and the
// peer key. So both nodes send their servers the same bytes for the same request, which the
// comparison of a regenerated reply and the re-run after a takeover rely on (DESIGN.md section 3,
// "Duplicate execution").
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "core/vocabulary.hpp"
#include "message/settings.hpp"
#include "wire/seq.hpp"

namespace us::message {

// A PROXY protocol v2 header (TCP over IPv4, command PROXY, no TLVs): 28 bytes.
inline constexpr size_t kProxyV2Size = 28;

class RequestIdentity {
 public:
  explicit RequestIdentity(const Settings& s);

  // Whether request heads are edited at all; if not, they go upstream as the client sent them.
  bool edits_heads() const { return edits_; }
  // The fields (lower case) the framer reports for removal: the id header, and in
  // x-forwarded-for mode X-Real-IP (a client's own X-Forwarded-For stays: ours comes last).
  std::span<const std::string> strip() const { return strip_; }
  // The lines added to request `index` of the stream that began at client seq `start`.
  void append_fields(const ConnKey& key, wire::SeqNum start, uint64_t index,
                     std::string& out) const;
  // Settings::request_id's (crypto::RequestIdMac in the daemon).
  std::string request_id(const ConnKey& key, wire::SeqNum start, uint64_t index) const {
    return id_(key, start, index);
  }
  // The first bytes of every connection to the server: the PROXY v2 header in proxy-v2 mode
  // (source: the client's address and port; destination: the advertised endpoint), else none.
  void append_preface(const ConnKey& key, std::string& out) const;

 private:
  Settings::ClientAddress mode_;
  std::string id_header_;
  std::function<std::string(const ConnKey&, wire::SeqNum, uint64_t)> id_;
  wire::Endpoint advertised_;
  bool edits_ = false;
  std::vector<std::string> strip_;
};

}  // namespace us::message
