// What the message layer needs of the packet layer's flow table, and nothing more: which client
// connection a made-up TUN-side address stands for, and (backup) how far this node holds the
// client's stream, so the primary may acknowledge it (I1). The node adapts the packet layer to it.
#pragma once
#include <optional>

#include "core/vocabulary.hpp"
#include "wire/address.hpp"
#include "wire/seq.hpp"

namespace us::message {

class Flows {
 public:
  virtual ~Flows() = default;
  // The connection the local kernel knows as `fake` (the accepted peer address), if any.
  virtual std::optional<ConnKey> key_for(const wire::Endpoint& fake) const = 0;
  // Backup: the message layer holds the client's stream below `seq` (a FIN counts as a byte).
  virtual void local_has(const wire::Endpoint& fake, wire::SeqNum seq) = 0;
  // Backup: the primary reset this connection (its Abort, or the close deadline both nodes
  // keep): the flow ends here too. Without it
  // the flow would outlive the client's socket (this kernel's own reset does not end a flow the
  // primary may still serve), and a new connection from the same port would find it live.
  virtual void peer_reset(const ConnKey& key) { (void)key; }
  // Whether the packet layer serves this connection alone (it was open when the peer rejoined;
  // docs/ARCHITECTURE.md, "Rejoin"). Its session must then serve alone too, however late it is
  // accepted: the peer will never replicate for it, nor ask for its replies.
  virtual bool unprotected(const wire::Endpoint& fake) const {
    (void)fake;
    return false;
  }
  // The client seq of the session's stream offset 0, if not the ISN + 1: a connection protected
  // again after a rejoin starts its streams where it was handed over (Adoption::client_next).
  virtual std::optional<wire::SeqNum> stream_start(const wire::Endpoint& fake) const {
    (void)fake;
    return std::nullopt;
  }
};

}  // namespace us::message
