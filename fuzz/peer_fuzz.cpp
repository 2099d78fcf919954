// libFuzzer target: what the peer node sends us (src/peer/messages, src/crypto/frame_auth,
// src/peer/datagram). Read fuzz/README.md first.
//
// Input: one type byte, then a payload. A LAN attacker without the key only reaches the frame
// checks, so the input is used three ways:
//  1. as raw bytes: a replication-channel byte stream reassembled as Channel::on_bytes does
//     (FrameAuth::frame_size, then open), and a datagram given to Datagrams::open;
//  2. behind the MAC: the payload sealed with a fixed test key under the type byte, as the peer
//     would send it, then opened and decoded; this is how the decoders are reached in the daemon;
//  3. the payload handed to every decoder directly.
// Checked: nothing forged passes authentication; a sealed frame opens to exactly what was sealed
// and frame_size agrees with its length; a message that decodes re-encodes to the same bytes;
// a sealed datagram is accepted or refused for the reason its type and payload call for, and a
// datagram reflected back to its sender is refused.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "crypto/frame_auth.hpp"
#include "crypto/key.hpp"
#include "peer/datagram.hpp"
#include "peer/messages.hpp"

#include "check.hpp"

namespace {

using namespace us;
using namespace us::peer;

constexpr crypto::Key kTestKey = {0x75, 0x6e, 0x64, 0x65, 0x72, 0x73, 0x74, 0x75, 0x64, 0x79, 0x20,
                                  0x66, 0x75, 0x7a, 0x7a, 0x20, 0x6b, 0x65, 0x79, 0x20, 0x30, 0x31,
                                  0x32, 0x33, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x61, 0x62};
const wire::Ipv4Addr kPrimaryIp(198, 18, 0, 1), kBackupIp(198, 18, 0, 2);
constexpr size_t kMaxFrame = 2 * 1024 * 1024;  // as peer/channel.cpp

bool same(std::span<const uint8_t> a, const std::vector<uint8_t>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end());
}

// Every decoder on one payload; whatever decodes must encode back to the same bytes.
void decode_all(uint8_t type, std::span<const uint8_t> payload) {
  std::vector<uint8_t> out;
  if (auto h = decode_hello(payload)) {
    encode(out, *h);
    FUZZ_CHECK(same(payload, out));
    out.clear();
  }
  if (auto hb = decode_heartbeat(payload)) {
    encode(out, *hb);
    FUZZ_CHECK(same(payload, out));
    out.clear();
  }
  if (auto a = decode_adoption(payload)) {
    encode(out, *a);
    FUZZ_CHECK(same(payload, out));
    out.clear();
  }
  if (auto m = decode_conn(static_cast<Type>(type), payload)) {
    FUZZ_CHECK(m->type == static_cast<Type>(type));
    FUZZ_CHECK(m->data.empty() ||
               (m->data.data() >= payload.data() &&
                m->data.data() + m->data.size() == payload.data() + payload.size()));
    encode(out, *m);
    FUZZ_CHECK(same(payload, out));
    out.clear();
    if (m->type == Type::Has) {
      if (auto has = decode_has(*m)) {
        // The flags byte is 0 or 1; with no edge the edge bytes are not read back, so compare
        // values rather than bytes.
        std::vector<uint8_t> extra;
        encode_has_extra(extra, *has);
        ConnMessage again = *m;
        again.data = extra;
        auto has2 = decode_has(again);
        FUZZ_CHECK(has2 && *has2 == *has);
      }
    }
  }
}

// The channel's reassembly: frames back to back; stops where the channel would fail.
void channel_stream(const crypto::FrameAuth& auth, std::span<const uint8_t> in) {
  size_t pos = 0;
  while (pos < in.size()) {
    auto size = crypto::FrameAuth::frame_size(in.subspan(pos));
    if (!size) break;
    FUZZ_CHECK(*size >= crypto::kFrameHeader + crypto::kFrameTag);
    if (*size > kMaxFrame || in.size() - pos < *size) break;
    auto opened = auth.open(in.subspan(pos, *size));
    // Forging a 128-bit tag is beyond a fuzzer: anything that opens was not forged by it.
    FUZZ_CHECK(!opened ||
               opened->payload.size() + crypto::kFrameHeader + crypto::kFrameTag == *size);
    if (!opened) break;
    pos += *size;
  }
}

void sealed_frame(const crypto::FrameAuth& auth, uint8_t type, uint64_t counter,
                  std::span<const uint8_t> payload) {
  std::vector<uint8_t> frame;
  auth.seal(frame, type, counter, payload);
  FUZZ_CHECK(frame.size() == payload.size() + crypto::kFrameHeader + crypto::kFrameTag);
  auto size = crypto::FrameAuth::frame_size(frame);
  FUZZ_CHECK(size && *size == frame.size());
  auto opened = auth.open(frame);
  FUZZ_CHECK(
      opened && opened->type == type && opened->counter == counter &&
      std::equal(opened->payload.begin(), opened->payload.end(), payload.begin(), payload.end()));
  decode_all(opened->type, opened->payload);
  // One flipped bit anywhere (chosen by the payload's length) is refused.
  frame[payload.size() % frame.size()] ^= 0x01;
  FUZZ_CHECK(!auth.open(frame));
}

void datagrams(uint8_t type, std::span<const uint8_t> raw, std::span<const uint8_t> payload) {
  // Fresh state per input (replay rule), copied from templates: deriving the keys and setting
  // up the HMAC contexts again would cost more than the rest of the input.
  static const Datagrams primary_template(kTestKey, Role::Primary, kBackupIp);
  static const Datagrams backup_template(kTestKey, Role::Backup, kPrimaryIp);
  Datagrams primary = primary_template;
  Datagrams backup = backup_template;
  // Unauthenticated bytes from the right and the wrong address.
  auto r = backup.open(raw, kPrimaryIp);
  FUZZ_CHECK(!r && r.error().reason == DatagramReject::Unauthenticated);
  auto w = backup.open(raw, kBackupIp);
  FUZZ_CHECK(!w && w.error().reason == DatagramReject::WrongSource);

  std::vector<uint8_t> sealed;
  primary.seal(sealed, static_cast<Type>(type), payload);
  // Reflected back to the primary, it is not the backup's.
  auto reflected = primary.open(sealed, kBackupIp);
  FUZZ_CHECK(!reflected && reflected.error().reason == DatagramReject::Unauthenticated);
  auto d = backup.open(sealed, kPrimaryIp);
  switch (static_cast<Type>(type)) {
    case Type::Heartbeat:
      if (auto hb = decode_heartbeat(payload); hb && hb->role == Role::Backup) {
        // It names the receiver's own role: reflected, whatever else it says.
        FUZZ_CHECK(!d && d.error().reason == DatagramReject::Reflected);
      } else if (hb) {
        FUZZ_CHECK(d && d->heartbeat && d->counter == 1);
        // The same datagram again is a replay.
        auto again = backup.open(sealed, kPrimaryIp);
        FUZZ_CHECK(!again && again.error().reason == DatagramReject::ReplayedHeartbeat);
      } else {
        FUZZ_CHECK(!d && d.error().reason == DatagramReject::MalformedHeartbeat);
      }
      break;
    case Type::Relay:
    case Type::Stray:
      FUZZ_CHECK(d && !d->heartbeat &&
                 std::equal(d->payload.begin(), d->payload.end(), payload.begin(), payload.end()));
      {
        // Played back, it is refused by the replay window.
        auto again = backup.open(sealed, kPrimaryIp);
        FUZZ_CHECK(!again && again.error().reason == DatagramReject::ReplayedPacket);
      }
      break;
    default:
      FUZZ_CHECK(!d && d.error().reason == DatagramReject::UnknownType);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const crypto::FrameAuth auth(kTestKey);
  if (size < 1) return 0;
  const std::span<const uint8_t> raw(data, size);
  const uint8_t type = data[0];
  const auto payload = raw.subspan(1);
  channel_stream(auth, raw);
  sealed_frame(auth, type, size, payload);
  datagrams(type, raw, payload);
  decode_all(type, payload);
  return 0;
}
