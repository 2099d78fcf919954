#include "peer/messages.hpp"

#include <cassert>
#include <string_view>

namespace us::peer {
namespace {

void put(std::vector<uint8_t>& out, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}

struct Reader {
  std::span<const uint8_t> in;
  size_t pos = 0;
  bool ok = true;
  uint64_t get(int bytes) {
    if (pos + static_cast<size_t>(bytes) > in.size()) {
      ok = false;
      return 0;
    }
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i) v = (v << 8) | in[pos++];
    return v;
  }
  bool done() const { return ok && pos == in.size(); }
};

constexpr uint8_t kNoWscale = 0xff;

bool valid_role(uint64_t v) {
  return v <= 1;
}
bool valid_mode(uint64_t v) {
  return v <= 2;
}

void put_key(std::vector<uint8_t>& out, const ConnKey& k) {
  put(out, k.ip.v, 4);
  put(out, k.port, 2);
  put(out, k.isn, 4);
}

// A setting's key or value on the wire: at most 255 bytes, printable ASCII without spaces.
bool valid_setting_text(std::string_view s) {
  if (s.size() > 255) return false;
  for (char c : s)
    if (c <= ' ' || c > '~') return false;
  return true;
}

void put_text(std::vector<uint8_t>& out, const std::string& s) {
  assert(valid_setting_text(s));
  put(out, s.size(), 1);
  out.insert(out.end(), s.begin(), s.end());
}

std::optional<std::string> get_text(Reader& r) {
  const auto n = static_cast<size_t>(r.get(1));
  if (!r.ok || r.in.size() - r.pos < n) return std::nullopt;
  std::string s(r.in.begin() + static_cast<long>(r.pos),
                r.in.begin() + static_cast<long>(r.pos + n));
  r.pos += n;
  if (!valid_setting_text(s)) return std::nullopt;
  return s;
}

ConnKey get_key(Reader& r) {
  ConnKey k;
  k.ip = wire::Ipv4Addr(static_cast<uint32_t>(r.get(4)));
  k.port = static_cast<uint16_t>(r.get(2));
  k.isn = static_cast<uint32_t>(r.get(4));
  return k;
}

}  // namespace

void encode(std::vector<uint8_t>& out, const Hello& m) {
  put(out, static_cast<uint8_t>(m.role), 1);
  put(out, static_cast<uint8_t>(m.mode), 1);
  put(out, m.boot_id, 8);
  out.insert(out.end(), m.nonce.begin(), m.nonce.end());
  assert(m.settings.size() <= 255);
  put(out, m.settings.size(), 1);
  for (const auto& [key, value] : m.settings) {
    put_text(out, key);
    put_text(out, value);
  }
}

void encode(std::vector<uint8_t>& out, const Heartbeat& m) {
  put(out, static_cast<uint8_t>(m.role), 1);
  put(out, static_cast<uint8_t>(m.mode), 1);
  put(out, m.boot_id, 8);
}

void encode(std::vector<uint8_t>& out, const ConnMessage& m) {
  put_key(out, m.key);
  switch (m.type) {
    case Type::Has:
      put(out, m.value, 4);
      out.insert(out.end(), m.data.begin(), m.data.end());
      break;
    case Type::Reply:
      put(out, m.value, 8);
      out.insert(out.end(), m.data.begin(), m.data.end());
      break;
    case Type::ReplyEnd:
      put(out, m.index, 8);
      put(out, m.value, 8);
      break;
    case Type::Close:
    case Type::ReplyAck:
      put(out, m.value, 8);
      break;
    default:
      break;
  }
}

void encode_has_extra(std::vector<uint8_t>& out, const HasReport& r) {
  put(out, r.right ? 1u : 0u, 1);
  put(out, r.right ? r.right->raw() : 0u, 4);
}

std::optional<HasReport> decode_has(const ConnMessage& m) {
  HasReport r;
  r.has = wire::SeqNum(static_cast<uint32_t>(m.value));
  if (m.data.empty()) return r;
  Reader rd{m.data};
  auto flags = rd.get(1);
  auto right = rd.get(4);
  if (!rd.done() || flags > 1) return std::nullopt;
  if (flags == 1) r.right = wire::SeqNum(static_cast<uint32_t>(right));
  return r;
}

void encode(std::vector<uint8_t>& out, const Adoption& a) {
  put_key(out, a.key);
  put(out, a.client_next.raw(), 4);
  put(out, a.server_next.raw(), 4);
  put(out, a.client_window, 2);
  put(out, a.window_shift, 1);
  put(out, a.client_wscale.value_or(kNoWscale), 1);
  put(out, a.client_mss, 2);
  put(out, a.sack_permitted ? 1u : 0u, 1);
  out.insert(out.end(), a.unread.begin(), a.unread.end());
}

std::optional<Adoption> decode_adoption(std::span<const uint8_t> payload) {
  Reader r{payload};
  Adoption a;
  a.key = get_key(r);
  a.client_next = wire::SeqNum(static_cast<uint32_t>(r.get(4)));
  a.server_next = wire::SeqNum(static_cast<uint32_t>(r.get(4)));
  a.client_window = static_cast<uint16_t>(r.get(2));
  auto shift = r.get(1), wscale = r.get(1);
  a.client_mss = static_cast<uint16_t>(r.get(2));
  auto sack = r.get(1);
  // RFC 7323 2.3: a shift above 14 is never used; nothing larger is a real value.
  if (!r.ok || shift > 14 || (wscale > 14 && wscale != kNoWscale) || sack > 1 || a.client_mss == 0)
    return std::nullopt;
  a.window_shift = static_cast<uint8_t>(shift);
  if (wscale != kNoWscale) a.client_wscale = static_cast<uint8_t>(wscale);
  a.sack_permitted = sack == 1;
  a.unread.assign(payload.begin() + static_cast<long>(r.pos), payload.end());
  return a;
}

std::optional<Hello> decode_hello(std::span<const uint8_t> payload) {
  Reader r{payload};
  Hello h{};
  auto role = r.get(1), mode = r.get(1);
  h.boot_id = r.get(8);
  if (!r.ok || !valid_role(role) || !valid_mode(mode) || r.in.size() - r.pos < h.nonce.size())
    return std::nullopt;
  h.role = static_cast<Role>(role);
  h.mode = static_cast<Mode>(mode);
  const auto nonce = payload.subspan(r.pos, h.nonce.size());
  std::copy(nonce.begin(), nonce.end(), h.nonce.begin());
  r.pos += h.nonce.size();
  const auto count = r.get(1);
  for (uint64_t i = 0; r.ok && i < count; ++i) {
    auto key = get_text(r);
    auto value = key ? get_text(r) : std::nullopt;
    if (!value || key->empty()) return std::nullopt;
    for (const auto& [k, v] : h.settings)
      if (k == *key) return std::nullopt;  // a duplicate would hide one of its values
    h.settings.emplace_back(std::move(*key), std::move(*value));
  }
  if (!r.done()) return std::nullopt;
  return h;
}

std::optional<Heartbeat> decode_heartbeat(std::span<const uint8_t> payload) {
  Reader r{payload};
  auto role = r.get(1), mode = r.get(1);
  auto boot = r.get(8);
  if (!r.done() || !valid_role(role) || !valid_mode(mode)) return std::nullopt;
  return Heartbeat{static_cast<Role>(role), static_cast<Mode>(mode), boot};
}

std::optional<ConnMessage> decode_conn(Type type, std::span<const uint8_t> payload) {
  Reader r{payload};
  ConnMessage m{};
  m.type = type;
  m.key = get_key(r);
  switch (type) {
    case Type::Has:
      m.value = r.get(4);
      if (!r.ok) return std::nullopt;
      m.data = payload.subspan(r.pos);
      return m;
    case Type::Reply:
      m.value = r.get(8);
      if (!r.ok) return std::nullopt;
      m.data = payload.subspan(r.pos);
      return m;
    case Type::ReplyEnd:
      m.index = r.get(8);
      m.value = r.get(8);
      break;
    case Type::Close:
    case Type::ReplyAck:
      m.value = r.get(8);
      break;
    case Type::Abort:
    case Type::AdoptRefused:
    case Type::Adopted:
      break;
    default:
      return std::nullopt;
  }
  if (!r.done()) return std::nullopt;
  return m;
}

}  // namespace us::peer
