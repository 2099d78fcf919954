// The words every layer shares, on the ground floor above wire/: a node's role and mode, how both
// nodes name a connection (I4), what the backup reports it holds (I1), the clock, and the hook
// through which tests make a node die at a named point. Nothing here does I/O.
#pragma once
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "wire/address.hpp"
#include "wire/seq.hpp"

namespace us {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;

// The role is the node's configured place in the pair; the mode is what the pair is doing now.
enum class Role { Primary, Backup };
enum class Mode { Starting, Duplex, Simplex };
const char* to_string(Role);
const char* to_string(Mode);
// The mode has one owner, the node's mode machine; the layers read it through this.
using ModeSource = std::function<Mode()>;

// I4: how both nodes name a connection: the client's address, port and initial sequence number.
struct ConnKey {
  wire::Ipv4Addr ip;
  uint16_t port = 0;
  uint32_t isn = 0;
  friend constexpr auto operator<=>(const ConnKey&, const ConnKey&) = default;
  std::string to_string() const;
};

struct ConnKeyHash {
  size_t operator()(const ConnKey& k) const {
    return std::hash<uint64_t>{}((uint64_t{k.ip.v} << 16 | k.port) ^ (uint64_t{k.isn} << 29));
  }
};

struct EndpointHash {
  size_t operator()(const wire::Endpoint& e) const {
    return std::hash<uint64_t>{}(uint64_t{e.ip.v} << 16 | e.port);
  }
};

// What the backup holds of a client's stream, as it reports it to the primary (I1). The primary
// acknowledges nothing beyond `has`, and its window ends where the backup's kernel can still take
// bytes (a segment beyond it is dropped there, yet the primary's kernel would take and SACK it).
struct HasReport {
  wire::SeqNum has;                   // every client byte below
  std::optional<wire::SeqNum> right;  // right edge of the backup kernel's receive window
  friend bool operator==(const HasReport&, const HasReport&) = default;
};

// A client connection a survivor hands to its rejoined peer at a request boundary, so that the
// peer's kernel holds it too and it is protected again (docs/ARCHITECTURE.md, "Rejoin"): every
// client byte below `client_next` was read and answered, and the client acknowledged every byte
// below `server_next`. The peer's kernel gets it through a made-up handshake at these numbers.
struct Adoption {
  ConnKey key;
  wire::SeqNum client_next;              // client seq: the next byte the client sends
  wire::SeqNum server_next;              // client-facing seq: the next byte we send
  uint16_t client_window = 0;            // the window field of the client's latest segment
  uint8_t window_shift = 0;              // the scale the client applies to our window field
  std::optional<uint8_t> client_wscale;  // the client's SYN: window scale,
  uint16_t client_mss = 536;             // MSS (536 if it sent none, RFC 9293 3.7.1)
  bool sack_permitted = false;           // and SACK-permitted
  // Client bytes from client_next on that the survivor's kernel holds unread (the next request,
  // perhaps acknowledged already): the joiner's kernel gets them as if from the client.
  std::vector<uint8_t> unread;
  friend bool operator==(const Adoption&, const Adoption&) = default;
};

// Called at each named fault point (docs/FAULTS.md). The node wires it to its fault injector;
// layers hold it as a value, so unit tests run without one (empty: no-op) or record the hits.
using FaultHook = std::function<void(std::string_view point)>;

}  // namespace us
