// The golden-packet table format for the packet layer (src/packet/packet_layer.hpp), after
// Katran's lib/testing: a Recorder that keeps what the layer emits, per output; one row per case
// ({description, role and mode, setup, input steps, expected output per output, counters}); and a
// check that compares every output to the byte and explains a difference packet by packet.
// packet_layer_test.cpp holds the fixture that runs the rows, and the rows themselves.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <ostream>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "packet/packet_layer.hpp"
#include "packet_builder.hpp"

namespace us::test {

using Packets = std::vector<std::vector<uint8_t>>;
using HasNotice = std::pair<ConnKey, HasReport>;

// Everything the layer emitted, one list per Emitter output, in order.
struct Emitted {
  Packets kernel = {};                  // into this node's TUN
  Packets client = {};                  // onto the LAN, to the client
  Packets primary = {};                 // backup: relayed to the primary
  Packets front = {};                   // primary: a stray client packet handed to the backup
  std::vector<HasNotice> has = {};      // backup -> primary: what the backup holds (I1)
  std::vector<ConnKey> refused = {};    // joiner -> survivor: an adopted connection refused
  std::vector<ConnKey> confirmed = {};  // joiner -> survivor: an adopted connection held
};

struct Recorder : packet::Emitter, Emitted {
  void to_kernel(std::span<const uint8_t> p) override { kernel.emplace_back(p.begin(), p.end()); }
  void to_client(std::span<const uint8_t> p, uint16_t segment_size) override {
    client.emplace_back(p.begin(), p.end());
    client_segment_sizes.push_back(segment_size);
  }
  void to_primary(std::span<const uint8_t> p) override { primary.emplace_back(p.begin(), p.end()); }
  void to_front(std::span<const uint8_t> p) override { front.emplace_back(p.begin(), p.end()); }
  void backup_has(const ConnKey& key, const HasReport& r) override { has.emplace_back(key, r); }
  void adoption_refused(const ConnKey& key) override { refused.push_back(key); }
  void adopted(const ConnKey& key) override { confirmed.push_back(key); }
  void clear() {
    static_cast<Emitted&>(*this) = Emitted{};
    client_segment_sizes.clear();
  }
  std::vector<uint16_t> client_segment_sizes;  // to_client's second argument, per packet
  size_t total() const {
    return kernel.size() + client.size() + primary.size() + front.size() + has.size() +
           refused.size() + confirmed.size();
  }
};

inline std::string describe(const HasNotice& n) {
  std::string s = n.first.to_string() + " has " + std::to_string(n.second.has.raw());
  if (n.second.right) s += " right " + std::to_string(n.second.right->raw());
  return s;
}

// One output, compared to the byte. On a difference: both packets decoded and the first differing
// byte; every emitted packet must also carry valid IP and TCP checksums.
inline void expect_packets(const char* output, const Packets& actual, const Packets& expected) {
  for (size_t i = 0; i < std::max(actual.size(), expected.size()); ++i) {
    if (i >= expected.size()) {
      ADD_FAILURE() << output << "[" << i << "] unexpected: " << describe(actual[i]);
      continue;
    }
    if (i >= actual.size()) {
      ADD_FAILURE() << output << "[" << i << "] missing: " << describe(expected[i]);
      continue;
    }
    std::vector<uint8_t> copy = actual[i];
    auto parsed = wire::parse_tcp_packet(copy, /*verify_tcp_checksum=*/true);
    EXPECT_TRUE(parsed.ok()) << output << "[" << i << "] does not verify: " << describe(actual[i]);
    if (actual[i] == expected[i]) continue;
    size_t at = 0;
    while (at < actual[i].size() && at < expected[i].size() && actual[i][at] == expected[i][at])
      ++at;
    ADD_FAILURE() << output << "[" << i << "] differs from byte " << at
                  << "\n  actual:   " << describe(actual[i])
                  << "\n  expected: " << describe(expected[i]);
  }
}

inline void expect_emitted(const Emitted& actual, const Emitted& expected) {
  expect_packets("to_kernel", actual.kernel, expected.kernel);
  expect_packets("to_client", actual.client, expected.client);
  expect_packets("to_primary", actual.primary, expected.primary);
  expect_packets("to_front", actual.front, expected.front);
  for (size_t i = 0; i < std::max(actual.has.size(), expected.has.size()); ++i) {
    if (i >= expected.has.size())
      ADD_FAILURE() << "backup_has[" << i << "] unexpected: " << describe(actual.has[i]);
    else if (i >= actual.has.size())
      ADD_FAILURE() << "backup_has[" << i << "] missing: " << describe(expected.has[i]);
    else if (actual.has[i] != expected.has[i])
      ADD_FAILURE() << "backup_has[" << i << "]\n  actual:   " << describe(actual.has[i])
                    << "\n  expected: " << describe(expected.has[i]);
  }
  EXPECT_EQ(actual.refused, expected.refused) << "adoption_refused";
  EXPECT_EQ(actual.confirmed, expected.confirmed) << "adopted";
}

// One input to the layer, in the order a row lists them.
struct Step {
  enum class At {
    Lan,        // a client packet on this node's own interface
    Relay,      // a client packet relayed by the backup (primary in duplex)
    Kernel,     // a segment from this node's kernel, out of the TUN
    BackupHas,  // primary: the backup's report
    LocalHas,   // backup: the local message layer read up to a seq
    Flush,      // end of an event-loop turn: coalesced backup_has notices go out
    TakeOver,   // backup: the primary died (the mode turns Simplex first)
    PeerLost,   // primary: the backup died (the mode turns Simplex first)
  };
  At at;
  std::vector<uint8_t> packet = {};
  HasReport report = {};
  wire::Endpoint fake = {};
};

namespace step {
inline Step lan(std::vector<uint8_t> p) {
  return {Step::At::Lan, std::move(p)};
}
inline Step relay(std::vector<uint8_t> p) {
  return {Step::At::Relay, std::move(p)};
}
inline Step kernel(std::vector<uint8_t> p) {
  return {Step::At::Kernel, std::move(p)};
}
inline Step backup_has(uint32_t has, std::optional<uint32_t> right = {}) {
  HasReport r;
  r.has = wire::SeqNum(has);
  if (right) r.right = wire::SeqNum(*right);
  return {Step::At::BackupHas, {}, r};
}
inline Step local_has(wire::Endpoint fake, uint32_t has) {
  HasReport r;
  r.has = wire::SeqNum(has);
  return {Step::At::LocalHas, {}, r, fake};
}
inline Step flush() {
  return {Step::At::Flush};
}
inline Step take_over() {
  return {Step::At::TakeOver};
}
inline Step peer_lost() {
  return {Step::At::PeerLost};
}
}  // namespace step

// How much a counter grew during the row's `when` steps.
struct CounterIs {
  const char* name;
  uint64_t packet::Counters::*field;
  uint64_t value;
};
#define US_COUNTER(field, n)                  \
  ::us::test::CounterIs {                     \
#field, &::us::packet::Counters::field, n \
  }

enum class Handshake {
  Fresh,        // no flow yet
  SynSeen,      // the client's SYN went through (relayed first when the backup fronts)
  Established,  // SYN, SYN-ACK (released by the backup's Has on a duplex primary), final ACK
};

struct GoldenCase {
  const char* name;  // <State>_<Event>, the test's name
  const char* description;
  Role role;
  Mode mode;
  Handshake handshake = Handshake::Fresh;
  bool wscale = true;            // whether the client's SYN offers window scaling
  std::vector<Step> given = {};  // more context; what it emits is not checked
  std::vector<Step> when = {};   // the input under test
  Emitted expect = {};           // exactly what `when` emits, per output
  Packets retained = {};         // backup: kernel segments kept for the client afterwards
  std::vector<CounterIs> counters = {};
  std::optional<size_t> open_flows = {};
};

inline void PrintTo(const GoldenCase& c, std::ostream* os) {
  *os << c.name << ": " << c.description;
}

}  // namespace us::test
