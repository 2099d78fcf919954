// libFuzzer target: the HTTP framer (src/http/framer), both directions. Read fuzz/README.md first.
//
// Input: one control byte, then the stream. Control bit 7 clear: a client->server stream for
// RequestFramer (bit 0 sets a 1 KiB body limit). Bit 7 set: a server->client stream for
// ResponseFramer, answering eight requests whose methods are bits 0-6 (1 = HEAD, else GET) and a
// GET for the eighth; finish() ends the stream.
//
// The stream is framed three times: in one piece, in pieces whose sizes come from a generator
// seeded by the input, and (short inputs) one byte at a time. Checked:
//  - every split gives the same messages and offset, and refuses a stream with the same status
//    after the same messages: proxies meet arbitrary segmentation;
//  - the framer never reports more bytes than it was fed: offset() <= fed, and each message lies
//    inside [0, offset()), in order, without overlap, with indexes counting from 0;
//  - an error is sticky: a later feed returns the same error.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

#include "http/framer.hpp"

#include "check.hpp"

namespace {

using namespace us::http;

// Piece sizes 1..64 from a xorshift generator, so a crash reproduces from the input alone.
struct Pieces {
  uint64_t state;
  size_t next() {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return 1 + static_cast<size_t>(state % 64);
  }
};

uint64_t seed_of(std::span<const uint8_t> in) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (uint8_t b : in) h = (h ^ b) * 1099511628211ull;
  return h | 1;
}

template <typename Info>
struct Outcome {
  std::vector<Info> done;
  std::optional<FrameError> error;
  uint64_t offset = 0;
  bool operator==(const Outcome&) const = default;
};

template <typename Info>
void print(const char* name, const Outcome<Info>& o) {
  std::fprintf(stderr, "%s: offset %llu, %zu messages:", name, (unsigned long long)o.offset,
               o.done.size());
  for (const auto& m : o.done) {
    std::fprintf(stderr, " [%llu,%llu) keep-alive %d", (unsigned long long)m.begin,
                 (unsigned long long)m.end, m.keep_alive);
    if constexpr (std::is_same_v<Info, RequestInfo>)
      std::fprintf(stderr, " method %d expect-continue %d", static_cast<int>(m.method),
                   m.expect_continue);
    else
      std::fprintf(stderr, " status %d interim %d", m.status, m.interim);
  }
  if (o.error)
    std::fprintf(stderr, " error %d \"%s\" at %llu", o.error->status, o.error->reason.c_str(),
                 (unsigned long long)o.error->offset);
  std::fprintf(stderr, "\n");
}

// The same outcome whatever the split; both are printed if not.
// Where and why a stream is refused may depend on the split (a check on a header name runs when
// the parser hands over a piece of it, which may come before or after a byte the parser refuses
// on its own), so for a refused stream only the status and the messages before it are compared.
template <typename Info>
bool same_outcome(const Outcome<Info>& whole, const Outcome<Info>& split) {
  if (whole == split) return true;
  if (whole.error && split.error && whole.error->status == split.error->status &&
      whole.done == split.done)
    return true;
  print("in one piece", whole);
  print("in pieces", split);
  return false;
}

template <typename Info>
void check_messages(const Outcome<Info>& o, size_t fed) {
  FUZZ_CHECK(o.offset <= fed);
  uint64_t prev_end = 0;
  for (size_t i = 0; i < o.done.size(); ++i) {
    const Info& m = o.done[i];
    FUZZ_CHECK(m.begin >= prev_end && m.begin < m.end && m.end <= o.offset);
    prev_end = m.end;
  }
  if (o.error) FUZZ_CHECK(o.error->offset <= fed);
}

// Feeds `stream` in pieces of the sizes `piece` returns (0 = all at once).
template <typename Framer, typename Info, typename PieceFn>
Outcome<Info> run(Framer& f, std::span<const uint8_t> stream, PieceFn piece) {
  Outcome<Info> o;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t n = std::min(piece(), stream.size() - pos);
    if (n == 0) n = stream.size() - pos;
    auto r = f.feed(stream.subspan(pos, n), o.done);
    pos += n;
    FUZZ_CHECK(f.offset() <= pos);
    if (!r) {
      o.error = r.error();
      FUZZ_CHECK(f.error() && *f.error() == r.error());
      std::vector<Info> more;
      auto again = f.feed(stream.subspan(0, 1), more);  // sticky
      FUZZ_CHECK(!again && again.error() == r.error() && more.empty());
      break;
    }
  }
  o.offset = f.offset();
  return o;
}

Outcome<RequestInfo> requests(std::span<const uint8_t> stream, RequestLimits limits, auto piece) {
  RequestFramer f(limits);
  auto o = run<RequestFramer, RequestInfo>(f, stream, piece);
  FUZZ_CHECK(f.completed() == o.done.size());
  for (size_t i = 0; i < o.done.size(); ++i) FUZZ_CHECK(o.done[i].index == i && o.done[i].complete);
  return o;
}

Outcome<ResponseInfo> replies(std::span<const uint8_t> stream, uint8_t head_mask, auto piece) {
  ResponseFramer f;
  for (int i = 0; i < 8; ++i) f.expect((head_mask >> i) & 1 ? Method::Head : Method::Get);
  auto o = run<ResponseFramer, ResponseInfo>(f, stream, piece);
  if (!o.error) {
    auto r = f.finish(o.done);
    if (!r) o.error = r.error();
    o.offset = f.offset();
  }
  uint64_t finals = 0;
  for (const auto& m : o.done) {
    FUZZ_CHECK(m.index == finals && m.index < 8);
    FUZZ_CHECK(m.interim == (m.status >= 100 && m.status < 200));
    if (!m.interim) ++finals;
  }
  FUZZ_CHECK(f.completed_final() == finals && f.awaiting() == 8 - finals);
  return o;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  const std::span<const uint8_t> stream(data + 1, size - 1);
  Pieces pieces{seed_of(stream)};
  auto whole = [] { return size_t{0}; };
  auto random = [&] { return pieces.next(); };
  auto bytewise = [] { return size_t{1}; };
  const bool bytewise_too = stream.size() <= 512;
  if ((control & 0x80) == 0) {
    const RequestLimits limits{(control & 1) ? 1024 : UINT64_MAX};
    auto a = requests(stream, limits, whole);
    check_messages(a, stream.size());
    FUZZ_CHECK(same_outcome(a, requests(stream, limits, random)));
    if (bytewise_too) FUZZ_CHECK(same_outcome(a, requests(stream, limits, bytewise)));
  } else {
    const uint8_t heads = control & 0x7f;
    auto a = replies(stream, heads, whole);
    check_messages(a, stream.size());
    FUZZ_CHECK(same_outcome(a, replies(stream, heads, random)));
    if (bytewise_too) FUZZ_CHECK(same_outcome(a, replies(stream, heads, bytewise)));
  }
  return 0;
}
