#include "wire/tcp_options.hpp"

#include <algorithm>

#include "wire/bytes.hpp"

namespace us::wire {

namespace {

// One TLV option: its kind, and where it sits within the options area.
struct OptionAt {
  uint8_t kind;
  size_t offset;  // of the kind byte
  size_t len;     // including kind and length bytes; 1 for NOP
};

// Calls f(OptionAt) for each option up to EOL; false on a malformed length.
template <typename F>
bool for_each_option(std::span<const uint8_t> opts, F&& f) {
  size_t i = 0;
  while (i < opts.size()) {
    uint8_t kind = opts[i];
    if (kind == tcp_opt::EOL) break;
    if (kind == tcp_opt::NOP) {
      f(OptionAt{kind, i, 1});
      ++i;
      continue;
    }
    if (i + 1 >= opts.size()) return false;
    size_t len = opts[i + 1];
    if (len < 2 || i + len > opts.size()) return false;
    f(OptionAt{kind, i, len});
    i += len;
  }
  return true;
}

// Sizes of the kinds we understand (RFC 793, 7323 §2.2/§3.2, 2018 §2/§3); others are opaque.
bool length_ok(uint8_t kind, size_t len) {
  switch (kind) {
    case tcp_opt::MSS:
      return len == 4;
    case tcp_opt::WSCALE:
      return len == 3;
    case tcp_opt::SACK_PERMITTED:
      return len == 2;
    case tcp_opt::TIMESTAMP:
      return len == 10;
    case tcp_opt::SACK:
      return len >= 10 && (len - 2) % 8 == 0;
    default:
      return true;
  }
}

// Validates every option before an in-place rewrite touches any of them.
bool well_formed(std::span<const uint8_t> opts) {
  bool ok = true;
  bool framed = for_each_option(opts, [&](OptionAt o) { ok = ok && length_ok(o.kind, o.len); });
  return framed && ok;
}

}  // namespace

Result<TcpOptions, ParseError> parse_options(std::span<const uint8_t> options) {
  TcpOptions out;
  bool ok = true;
  bool framed = for_each_option(options, [&](OptionAt o) {
    if (!length_ok(o.kind, o.len)) {
      ok = false;
      return;
    }
    size_t v = o.offset + 2;
    switch (o.kind) {
      case tcp_opt::MSS:
        out.mss = load_be16(options, v);
        break;
      case tcp_opt::WSCALE:
        out.wscale = options[v];
        break;
      case tcp_opt::SACK_PERMITTED:
        out.sack_permitted = true;
        break;
      case tcp_opt::TIMESTAMP:
        out.timestamp = std::pair{load_be32(options, v), load_be32(options, v + 4)};
        break;
      case tcp_opt::SACK:
        // At most 4 blocks fit in 40 bytes (RFC 2018 §3); a second SACK option is not expected.
        for (size_t b = v; b + 8 <= o.offset + o.len && out.sack_count < out.sack.size(); b += 8) {
          out.sack[out.sack_count++] =
              SackBlock{SeqNum(load_be32(options, b)), SeqNum(load_be32(options, b + 4))};
        }
        break;
      default:
        break;
    }
  });
  if (!framed || !ok) return Err{ParseError::BadOption};
  return out;
}

bool strip_timestamps(TcpView& tcp) {
  auto opts = tcp.options();
  if (!well_formed(opts)) return false;
  bool found = false;
  static constexpr std::array<uint8_t, 10> kNops{1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  for_each_option(opts, [&](OptionAt o) {
    if (o.kind != tcp_opt::TIMESTAMP) return;
    // NOPs rather than removal: the header length must not change under the kernel's feet.
    tcp.patch(kTcpMinHeaderLen + o.offset, kNops);
    found = true;
  });
  return found;
}

void translate_sack(TcpView& tcp, SeqOffset offset) {
  auto opts = tcp.options();
  if (!well_formed(opts)) return;
  for_each_option(opts, [&](OptionAt o) {
    if (o.kind != tcp_opt::SACK) return;
    for (size_t e = o.offset + 2; e + 4 <= o.offset + o.len; e += 4) {
      std::array<uint8_t, 4> edge{};
      store_be32(edge, 0, offset.apply(SeqNum(load_be32(opts, e))).raw());
      tcp.patch(kTcpMinHeaderLen + e, edge);
    }
  });
}

bool clamp_mss(TcpView& tcp, uint16_t max_mss) {
  auto opts = tcp.options();
  if (!well_formed(opts)) return false;
  bool changed = false;
  for_each_option(opts, [&](OptionAt o) {
    if (o.kind != tcp_opt::MSS || load_be16(opts, o.offset + 2) <= max_mss) return;
    std::array<uint8_t, 2> v{};
    store_be16(v, 0, max_mss);
    tcp.patch(kTcpMinHeaderLen + o.offset + 2, v);
    changed = true;
  });
  return changed;
}

std::vector<uint8_t> encode_options(const TcpOptions& opts) {
  std::vector<uint8_t> out;
  out.reserve(kTcpMaxOptionsLen);
  auto put16 = [&](uint16_t v) {
    out.push_back(static_cast<uint8_t>(v >> 8));
    out.push_back(static_cast<uint8_t>(v));
  };
  auto put32 = [&](uint32_t v) {
    put16(static_cast<uint16_t>(v >> 16));
    put16(static_cast<uint16_t>(v));
  };
  if (opts.mss) {
    out.insert(out.end(), {tcp_opt::MSS, 4});
    put16(*opts.mss);
  }
  // SACK-permitted shares a 4-byte slot with the first two bytes of TS, as Linux sends it.
  if (opts.sack_permitted && opts.timestamp) {
    out.insert(out.end(), {tcp_opt::SACK_PERMITTED, 2});
  } else if (opts.sack_permitted) {
    out.insert(out.end(), {tcp_opt::NOP, tcp_opt::NOP, tcp_opt::SACK_PERMITTED, 2});
  } else if (opts.timestamp) {
    out.insert(out.end(), {tcp_opt::NOP, tcp_opt::NOP});
  }
  if (opts.timestamp) {
    out.insert(out.end(), {tcp_opt::TIMESTAMP, 10});
    put32(opts.timestamp->first);
    put32(opts.timestamp->second);
  }
  if (opts.wscale) out.insert(out.end(), {tcp_opt::NOP, tcp_opt::WSCALE, 3, *opts.wscale});
  size_t blocks = std::min<size_t>(opts.sack_count, opts.sack.size());
  while (blocks > 0 && out.size() + 4 + 8 * blocks > kTcpMaxOptionsLen) --blocks;
  if (blocks > 0) {
    out.insert(out.end(),
               {tcp_opt::NOP, tcp_opt::NOP, tcp_opt::SACK, static_cast<uint8_t>(2 + 8 * blocks)});
    for (size_t i = 0; i < blocks; ++i) {
      put32(opts.sack[i].left.raw());
      put32(opts.sack[i].right.raw());
    }
  }
  // Every group above is already a multiple of 4; keep the invariant explicit anyway.
  while (out.size() % 4 != 0) out.push_back(tcp_opt::EOL);
  return out;
}

}  // namespace us::wire
