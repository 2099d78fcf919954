#include "config/config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>

#include "crypto/key.hpp"

namespace us::config {

namespace fs = std::filesystem;
using wire::Endpoint;
using wire::Ipv4Addr;

namespace {

// The schema. Unknown tables and keys are rejected so a typo cannot silently become a default.
struct TableSchema {
  std::string_view name;
  bool required;
  std::initializer_list<std::string_view> keys;
};
constexpr std::string_view kService = "service", kNode = "node", kPeer = "peer",
                           kHeartbeat = "heartbeat", kTun = "tun", kLimits = "limits", kLog = "log";
constexpr std::string_view kMetrics = "metrics";
constexpr std::string_view kHooks = "hooks";
const TableSchema kSchema[] = {
    {kService, true, {"advertised", "interface"}},
    {kNode,
     true,
     {"role", "address", "server", "control_socket", "startup_wait_ms", "user", "client_address",
      "request_id_header"}},
    {kPeer, true, {"address", "port", "key_file"}},
    {kHeartbeat, true, {"interval_ms", "timeout_ms"}},
    {kTun, false, {"name", "address", "prefix", "mtu"}},
    {kLimits,
     false,
     {"max_connections", "request_cache_bytes", "replication_window_bytes", "idle_timeout_ms",
      "max_body_bytes", "request_buffer_bytes", "header_timeout_ms", "body_timeout_ms",
      "close_timeout_ms", "max_connections_per_source", "send_timeout_ms",
      "request_buffer_total_bytes", "half_open_timeout_ms", "flow_idle_timeout_ms",
      "syn_cookie_threshold"}},
    {kLog, false, {"level", "format"}},
    {kMetrics, false, {"listen"}},
    {kHooks, false, {"on_front", "on_alone", "timeout_ms"}},
};

constexpr size_t kMaxIfName = 15;        // IFNAMSIZ - 1
constexpr size_t kMaxSocketPath = 107;   // sizeof(sockaddr_un::sun_path) - 1
constexpr uintmax_t kMaxKeyFile = 4096;  // a key file is 65 bytes; refuse to slurp anything big
constexpr size_t kMaxFieldName = 64;     // the framer matches field names up to this length

const char* type_name(toml::node_type t) {
  switch (t) {
    case toml::node_type::none:
      return "nothing";
    case toml::node_type::table:
      return "a table";
    case toml::node_type::array:
      return "an array";
    case toml::node_type::string:
      return "a string";
    case toml::node_type::integer:
      return "an integer";
    case toml::node_type::floating_point:
      return "a float";
    case toml::node_type::boolean:
      return "a boolean";
    case toml::node_type::date:
      return "a date";
    case toml::node_type::time:
      return "a time";
    case toml::node_type::date_time:
      return "a date-time";
  }
  return "an unknown type";
}

std::string quote(std::string_view s) {
  return "\"" + std::string(s) + "\"";
}

bool is_unicast(Ipv4Addr a) {
  const uint32_t v = a.v;
  return v != 0 && v != 0xffffffffu && (v >> 28) != 0xe;  // not 0.0.0.0, broadcast, 224/4
}

// An HTTP field name: an RFC 7230 3.2.6 token (1*tchar).
bool is_field_name(std::string_view s) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || kSymbols.find(ch) != kSymbols.npos;
  });
}

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

bool in_subnet(Ipv4Addr a, Ipv4Addr net, unsigned prefix) {
  const uint32_t mask = prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
  return (a.v & mask) == (net.v & mask);
}

// Reads typed values and keeps the first error, so the checks read as a flat list in schema order.
class Reader {
 public:
  explicit Reader(const toml::table& root) : root_(root) {}

  std::optional<ConfigError> error;

  void fail(std::string key, std::string message) {
    if (!error) error = ConfigError{std::move(key), std::move(message)};
  }

  void check_unknown() {
    for (auto&& [k, v] : root_) {
      const TableSchema* schema = find(k.str());
      if (schema == nullptr) {
        fail(std::string(k.str()), v.is_table() ? "unknown table" : "unknown key");
        continue;
      }
      if (!v.is_table()) {
        fail(std::string(k.str()),
             std::string("expected a table (got ") + type_name(v.type()) + ")");
        continue;
      }
      for (auto&& [sub, unused] : *v.as_table()) {
        (void)unused;
        bool known = false;
        for (std::string_view allowed : schema->keys) known = known || allowed == sub.str();
        if (!known) fail(dotted(schema->name, sub.str()), "unknown key");
      }
    }
    for (const TableSchema& s : kSchema)
      if (s.required && !root_.contains(s.name))
        fail(std::string(s.name), "required table missing");
  }

  std::optional<std::string> string(std::string_view table, std::string_view key, bool required) {
    const toml::node* n = get(table, key, required);
    if (n == nullptr) return std::nullopt;
    if (!n->is_string()) return wrong_type(table, key, "a string", *n);
    return n->as_string()->get();
  }

  std::optional<int64_t> integer(std::string_view table, std::string_view key, bool required,
                                 int64_t min, int64_t max) {
    const toml::node* n = get(table, key, required);
    if (n == nullptr) return std::nullopt;
    if (!n->is_integer()) return wrong_type(table, key, "an integer", *n);
    const int64_t v = n->as_integer()->get();
    if (v < min || v > max) {
      fail(dotted(table, key), "must be between " + std::to_string(min) + " and " +
                                   std::to_string(max) + " (got " + std::to_string(v) + ")");
      return std::nullopt;
    }
    return v;
  }

  std::optional<Ipv4Addr> ip(std::string_view table, std::string_view key, bool required,
                             bool unicast) {
    auto text = string(table, key, required);
    if (!text) return std::nullopt;
    auto a = Ipv4Addr::parse(*text);
    if (!a) {
      fail(dotted(table, key), "expected a dotted-quad IPv4 address (got " + quote(*text) + ")");
      return std::nullopt;
    }
    if (unicast && !is_unicast(*a)) {
      fail(dotted(table, key), "must be a unicast address (got " + quote(*text) + ")");
      return std::nullopt;
    }
    return a;
  }

  std::optional<Endpoint> endpoint(std::string_view table, std::string_view key, bool required) {
    auto text = string(table, key, required);
    if (!text) return std::nullopt;
    if (auto e = Endpoint::parse(*text)) {
      if (is_unicast(e->ip)) return e;
      fail(dotted(table, key), "must be a unicast address (got " + quote(*text) + ")");
      return std::nullopt;
    }
    // Endpoint::parse says only "no"; say which half is wrong.
    const auto colon = text->rfind(':');
    std::string why;
    if (colon == std::string::npos)
      why = "expected IPv4:port";
    else if (!Ipv4Addr::parse(std::string_view(*text).substr(0, colon)))
      why = "expected a dotted-quad IPv4 address before ':'";
    else
      why = "port must be between 1 and 65535";
    fail(dotted(table, key), why + " (got " + quote(*text) + ")");
    return std::nullopt;
  }

  // Interface names: the kernel's limit, and nothing that could be a path.
  std::optional<std::string> ifname(std::string_view table, std::string_view key, bool required) {
    auto name = string(table, key, required);
    if (!name) return std::nullopt;
    bool bad = name->empty() || name->size() > kMaxIfName || *name == "." || *name == "..";
    for (char c : *name) bad = bad || c == '/' || c == ':' || c <= ' ' || c == 0x7f;
    if (bad) {
      fail(dotted(table, key),
           "must be an interface name of 1 to 15 characters without '/', ':' "
           "or whitespace (got " +
               quote(*name) + ")");
      return std::nullopt;
    }
    return name;
  }

  static std::string dotted(std::string_view table, std::string_view key) {
    return std::string(table) + "." + std::string(key);
  }

 private:
  static const TableSchema* find(std::string_view name) {
    for (const TableSchema& s : kSchema)
      if (s.name == name) return &s;
    return nullptr;
  }

  const toml::node* get(std::string_view table, std::string_view key, bool required) {
    const toml::table* t = root_[table].as_table();
    const toml::node* n = t ? t->get(key) : nullptr;
    // A missing required table was already reported by check_unknown.
    if (n == nullptr && required && t != nullptr) fail(dotted(table, key), "required key missing");
    return n;
  }

  std::nullopt_t wrong_type(std::string_view table, std::string_view key, const char* want,
                            const toml::node& n) {
    fail(dotted(table, key),
         std::string("expected ") + want + " (got " + type_name(n.type()) + ")");
    return std::nullopt;
  }

  const toml::table& root_;
};

fs::path resolve(const fs::path& base_dir, const fs::path& p) {
  return p.is_absolute() ? p : (base_dir / p).lexically_normal();
}

// Why `path` cannot be a hook, or nullopt: an absolute path to an executable regular file that
// only its owner may write.
std::optional<std::string> hook_problem(const std::string& path) {
  const fs::path p(path);
  if (!p.is_absolute()) return "must be an absolute path (got " + quote(path) + ")";
  std::error_code ec;
  auto st = fs::status(p, ec);
  if (ec || !fs::exists(st)) return quote(path) + " does not exist";
  if (!fs::is_regular_file(st)) return quote(path) + " is not a regular file";
  const auto perms = st.permissions();
  if ((perms & (fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec)) ==
      fs::perms::none)
    return fmt::format("{} is not executable (mode {:04o}); run: chmod 755 {}", quote(path),
                       static_cast<unsigned>(perms) & 0777u, path);
  if ((perms & (fs::perms::group_write | fs::perms::others_write)) != fs::perms::none)
    return fmt::format(
        "{} is writable by group or others (mode {:04o}) and runs as root; run: "
        "chmod go-w {}",
        quote(path), static_cast<unsigned>(perms) & 0777u, path);
  return std::nullopt;
}

std::optional<LogLevel> parse_level(std::string_view s) {
  if (s == "trace") return LogLevel::Trace;
  if (s == "debug") return LogLevel::Debug;
  if (s == "info") return LogLevel::Info;
  if (s == "warn") return LogLevel::Warn;
  if (s == "error") return LogLevel::Error;
  return std::nullopt;
}

// Reads a small text file; the error says why in words.
Result<std::string, std::string> read_small_file(const fs::path& p, uintmax_t max_size) {
  std::error_code ec;
  const auto st = fs::status(p, ec);
  if (ec) return Err{"cannot read " + quote(p.string()) + ": " + ec.message()};
  if (!fs::is_regular_file(st)) return Err{quote(p.string()) + " is not a regular file"};
  const auto size = fs::file_size(p, ec);
  if (ec) return Err{"cannot read " + quote(p.string()) + ": " + ec.message()};
  if (size > max_size)
    return Err{quote(p.string()) + " is too large (" + std::to_string(size) + " bytes)"};
  std::ifstream in(p, std::ios::binary);
  if (!in) return Err{"cannot read " + quote(p.string()) + ": " + std::strerror(errno)};
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return Err{"cannot read " + quote(p.string()) + ": read error"};
  return buf.str();
}

Result<Config, ConfigError> parse_table(const toml::table& root, const fs::path& base_dir) {
  Reader r(root);
  Config c;
  r.check_unknown();
  if (r.error) return Err{*r.error};

  constexpr int64_t kU32 = std::numeric_limits<uint32_t>::max();
  constexpr int64_t kI64 = std::numeric_limits<int64_t>::max();

  if (auto v = r.endpoint(kService, "advertised", true)) c.service.advertised = *v;
  if (auto v = r.ifname(kService, "interface", true)) c.service.interface = *v;

  if (auto v = r.string(kNode, "role", true)) {
    if (*v == "primary")
      c.node.role = Role::Primary;
    else if (*v == "backup")
      c.node.role = Role::Backup;
    else
      r.fail("node.role", "must be \"primary\" or \"backup\" (got " + quote(*v) + ")");
  }
  if (auto v = r.ip(kNode, "address", true, true)) c.node.address = *v;
  if (auto v = r.endpoint(kNode, "server", true)) c.node.server = *v;
  if (auto v = r.string(kNode, "control_socket", false)) {
    if (v->empty())
      r.fail("node.control_socket", "must not be empty");
    else
      c.node.control_socket = resolve(base_dir, *v);
  }
  if (auto v = r.integer(kNode, "startup_wait_ms", false, 0, kU32))
    c.node.startup_wait_ms = static_cast<uint32_t>(*v);
  if (auto v = r.string(kNode, "user", false)) {
    // Only the name's form here: whether the host has that user is checked by `run` and `check`.
    bool ok = !v->empty() && v->size() <= 32 && v->front() != '-' &&
              std::all_of(v->begin(), v->end(), [](char ch) {
                return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-' ||
                       ch == '.';
              });
    if (ok)
      c.node.user = *v;
    else
      r.fail("node.user",
             "must be a user name (letters, digits, '_', '-', '.'; got " + quote(*v) + ")");
  }

  if (auto v = r.string(kNode, "client_address", false)) {
    if (*v == "none")
      c.node.client_address = ClientAddress::None;
    else if (*v == "x-forwarded-for")
      c.node.client_address = ClientAddress::XForwardedFor;
    else if (*v == "proxy-v2")
      c.node.client_address = ClientAddress::ProxyV2;
    else
      r.fail("node.client_address",
             "must be \"none\", \"x-forwarded-for\" or \"proxy-v2\" (got " + quote(*v) + ")");
  }
  if (auto v = r.string(kNode, "request_id_header", false)) {
    // A token (RFC 7230 3.2.6) that is none of the fields the framing or x-forwarded-for own.
    std::string lower = lower_case(*v);
    static constexpr std::string_view kReserved[] = {
        "host", "content-length", "transfer-encoding", "connection", "expect", "upgrade",
        "te",   "trailer",        "x-forwarded-for",   "x-real-ip"};
    if (!v->empty() && (!is_field_name(*v) || v->size() > kMaxFieldName))
      r.fail("node.request_id_header",
             "must be a header field name: 1 to 64 letters, digits or !#$%&'*+-.^_`|~ (got " +
                 quote(*v) + ")");
    else if (std::find(std::begin(kReserved), std::end(kReserved), lower) != std::end(kReserved))
      r.fail("node.request_id_header",
             "must not be a field the proxy or HTTP framing owns (got " + quote(*v) + ")");
    else
      c.node.request_id_header = *v;
  }

  if (auto v = r.ip(kPeer, "address", true, true)) c.peer.address = *v;
  if (auto v = r.integer(kPeer, "port", false, 1, 65535)) c.peer.port = static_cast<uint16_t>(*v);
  if (auto v = r.string(kPeer, "key_file", true)) {
    if (v->empty())
      r.fail("peer.key_file", "must not be empty");
    else
      c.peer.key_file = resolve(base_dir, *v);
  }

  if (auto v = r.integer(kHeartbeat, "interval_ms", true, 1, kU32))
    c.heartbeat.interval_ms = static_cast<uint32_t>(*v);
  if (auto v = r.integer(kHeartbeat, "timeout_ms", true, 1, kU32))
    c.heartbeat.timeout_ms = static_cast<uint32_t>(*v);

  if (auto v = r.ifname(kTun, "name", false)) c.tun.name = *v;
  if (auto v = r.ip(kTun, "address", false, true)) c.tun.address = *v;
  if (auto v = r.integer(kTun, "prefix", false, 8, 30)) c.tun.prefix = static_cast<uint8_t>(*v);
  if (auto v = r.integer(kTun, "mtu", false, 576, 9000)) c.tun.mtu = static_cast<uint16_t>(*v);

  if (auto v = r.integer(kLimits, "max_connections", false, 1, kI64)) c.limits.max_connections = *v;
  if (auto v = r.integer(kLimits, "request_cache_bytes", false, 1, kI64))
    c.limits.request_cache_bytes = *v;
  if (auto v = r.integer(kLimits, "replication_window_bytes", false, 1, kI64))
    c.limits.replication_window_bytes = *v;
  if (auto v = r.integer(kLimits, "idle_timeout_ms", false, 1000, kI64))
    c.limits.idle_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "max_body_bytes", false, 0, kI64)) c.limits.max_body_bytes = *v;
  if (auto v = r.integer(kLimits, "request_buffer_bytes", false, 1, kI64))
    c.limits.request_buffer_bytes = *v;
  if (auto v = r.integer(kLimits, "header_timeout_ms", false, 100, kI64))
    c.limits.header_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "body_timeout_ms", false, 100, kI64))
    c.limits.body_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "close_timeout_ms", false, 100, kI64))
    c.limits.close_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "max_connections_per_source", false, 0, kI64))
    c.limits.max_connections_per_source = *v;
  if (auto v = r.integer(kLimits, "send_timeout_ms", false, 100, kI64))
    c.limits.send_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "request_buffer_total_bytes", false, 1, kI64))
    c.limits.request_buffer_total_bytes = *v;
  if (auto v = r.integer(kLimits, "half_open_timeout_ms", false, 100, kI64))
    c.limits.half_open_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "flow_idle_timeout_ms", false, 1000, kI64))
    c.limits.flow_idle_timeout_ms = *v;
  if (auto v = r.integer(kLimits, "syn_cookie_threshold", false, 0, kI64))
    c.limits.syn_cookie_threshold = *v;

  if (auto v = r.string(kLog, "level", false)) {
    if (auto level = parse_level(*v))
      c.log.level = *level;
    else
      r.fail("log.level", "must be one of trace, debug, info, warn, error (got " + quote(*v) + ")");
  }
  if (auto v = r.string(kLog, "format", false)) {
    if (*v == "text")
      c.log.format = LogFormat::Text;
    else if (*v == "json")
      c.log.format = LogFormat::Json;
    else
      r.fail("log.format", "must be text or json (got " + quote(*v) + ")");
  }

  // metrics.listen: 0.0.0.0 (every address) is allowed here, unlike the other endpoints; empty
  // is off, as when the key is left out.
  if (auto v = r.string(kMetrics, "listen", false); v && !v->empty()) {
    auto e = Endpoint::parse(*v);
    if (!e)
      r.fail("metrics.listen",
             "expected IPv4:port, e.g. \"127.0.0.1:9464\" (got " + quote(*v) + ")");
    else if (e->ip.v != 0 && !is_unicast(e->ip))
      r.fail("metrics.listen", "must be a unicast address or 0.0.0.0 (got " + quote(*v) + ")");
    else
      c.metrics.listen = *e;
  }

  // hooks.*: run as root (docs/SECURITY.md), so a file others could rewrite is refused.
  for (auto [key, out] :
       {std::pair{"on_front", &c.hooks.on_front}, std::pair{"on_alone", &c.hooks.on_alone}}) {
    auto v = r.string(kHooks, key, false);
    if (!v || v->empty()) continue;
    if (auto why = hook_problem(*v))
      r.fail(Reader::dotted(kHooks, key), *why);
    else
      *out = *v;
  }
  if (auto v = r.integer(kHooks, "timeout_ms", false, 100, 3600000)) c.hooks.timeout_ms = *v;
  if (r.error) return Err{*r.error};

  // Cross-key rules.
  if (c.node.address == c.peer.address)
    return Err{ConfigError{
        "peer.address", "must differ from node.address (both " + c.peer.address.to_string() + ")"}};
  // The advertised IP moves between the nodes; it cannot be either node's own address.
  for (auto [name, addr] :
       {std::pair{"node.address", c.node.address}, std::pair{"peer.address", c.peer.address}}) {
    if (c.service.advertised.ip == addr)
      return Err{ConfigError{"service.advertised", std::string("IP must differ from ") + name +
                                                       " (both " + addr.to_string() + ")"}};
  }
  if (c.node.server == c.service.advertised)
    return Err{ConfigError{"node.server", "must differ from service.advertised (both " +
                                              c.node.server.to_string() + ")"}};
  // Failure detection needs at least two missed heartbeats before declaring the peer dead.
  if (uint64_t{c.heartbeat.timeout_ms} < 2 * uint64_t{c.heartbeat.interval_ms})
    return Err{ConfigError{"heartbeat.timeout_ms",
                           "must be at least 2 x interval_ms (got " +
                               std::to_string(c.heartbeat.timeout_ms) + ", interval " +
                               std::to_string(c.heartbeat.interval_ms) + ")"}};
  // A flow silent that long is dropped by the packet layer: a live connection must have been
  // closed by the idle timeout (and its FIN retransmitted) well before.
  if (c.limits.flow_idle_timeout_ms < 2 * c.limits.idle_timeout_ms)
    return Err{ConfigError{"limits.flow_idle_timeout_ms",
                           "must be at least 2 x idle_timeout_ms (got " +
                               std::to_string(c.limits.flow_idle_timeout_ms) + ", idle timeout " +
                               std::to_string(c.limits.idle_timeout_ms) + ")"}};
  // The TUN subnet is routed to us; overlapping the LAN or service would swallow real traffic.
  for (auto [name, addr] :
       {std::pair{"service.advertised", c.service.advertised.ip},
        std::pair{"node.address", c.node.address}, std::pair{"peer.address", c.peer.address}}) {
    if (in_subnet(addr, c.tun.address, c.tun.prefix))
      return Err{ConfigError{"tun.address",
                             c.tun.address.to_string() + "/" + std::to_string(c.tun.prefix) +
                                 " must not contain " + name + " (" + addr.to_string() + ")"}};
  }

  if (const auto& m = c.metrics.listen) {
    // The primary's replication channel listens on node.address:peer.port.
    if (m->port == c.peer.port && (m->ip.v == 0 || m->ip == c.node.address))
      return Err{ConfigError{"metrics.listen", "must not use peer.port (" +
                                                   std::to_string(c.peer.port) + ") on " +
                                                   c.node.address.to_string()}};
    // The advertised address moves between the nodes and its traffic is the service's.
    if (m->ip == c.service.advertised.ip)
      return Err{ConfigError{"metrics.listen", "IP must differ from service.advertised (both " +
                                                   m->ip.to_string() + ")"}};
  }

  if (c.node.control_socket.empty())
    c.node.control_socket =
        fs::path("/run/understudy") / (std::string(to_string(c.node.role)) + ".sock");
  if (c.node.control_socket.native().size() > kMaxSocketPath)
    return Err{ConfigError{"node.control_socket",
                           "path is too long for a Unix socket (" +
                               std::to_string(c.node.control_socket.native().size()) +
                               " bytes, at most " + std::to_string(kMaxSocketPath) + ")"}};

  auto text = read_small_file(c.peer.key_file, kMaxKeyFile);
  if (!text) return Err{ConfigError{"peer.key_file", text.error()}};
  // The key authenticates every frame between the nodes: anyone who can read it can forge them.
  std::error_code ec;
  auto perms = fs::status(c.peer.key_file, ec).permissions();
  if (!ec && (perms & (fs::perms::group_all | fs::perms::others_all)) != fs::perms::none)
    return Err{ConfigError{
        "peer.key_file",
        fmt::format("{} is readable by group or others (mode {:04o}); run: chmod 600 {}",
                    quote(c.peer.key_file.string()), static_cast<unsigned>(perms) & 0777u,
                    c.peer.key_file.string())}};
  auto key = crypto::parse_key(*text);
  if (!key)
    return Err{ConfigError{
        "peer.key_file", quote(c.peer.key_file.string()) + " holds no valid key: " + key.error()}};
  c.peer.key.assign(key->begin(), key->end());
  return c;
}

}  // namespace

const char* to_string(LogLevel l) {
  switch (l) {
    case LogLevel::Trace:
      return "trace";
    case LogLevel::Debug:
      return "debug";
    case LogLevel::Info:
      return "info";
    case LogLevel::Warn:
      return "warn";
    case LogLevel::Error:
      return "error";
  }
  return "unknown";
}

const char* to_string(LogFormat f) {
  switch (f) {
    case LogFormat::Text:
      return "text";
    case LogFormat::Json:
      return "json";
  }
  return "unknown";
}

const char* to_string(ClientAddress a) {
  switch (a) {
    case ClientAddress::None:
      return "none";
    case ClientAddress::XForwardedFor:
      return "x-forwarded-for";
    case ClientAddress::ProxyV2:
      return "proxy-v2";
  }
  return "unknown";
}

std::string ConfigError::line() const {
  return key + ": " + message;
}

Result<Config, ConfigError> parse_config(std::string_view toml_text, const fs::path& base_dir) {
  // toml++ reports syntax errors by exception; nothing escapes this function.
  try {
    toml::table root = toml::parse(toml_text);
    return parse_table(root, base_dir);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source().begin;
    return Err{ConfigError{"(syntax)", "line " + std::to_string(where.line) + ", column " +
                                           std::to_string(where.column) + ": " +
                                           std::string(e.description())}};
  } catch (const std::exception& e) {
    return Err{ConfigError{"(internal)", e.what()}};
  }
}

// Shared: a difference makes the two nodes disagree about the same client's bytes, sequence numbers
// or liveness, so the pair would be wrong rather than merely tuned differently.
//   service.advertised         the address and port both serve; each node derives its server ISNs
//                              from it (crypto/isn, I3), so a backup with another one would take
//                              over every connection on the wrong sequence numbers.
//   peer.port                  UDP and TCP between the nodes. A difference usually means the nodes
//                              never hear each other at all; listed so the list is complete.
//   heartbeat.interval_ms,     the failure detector: each node judges the other's heartbeats by
//   heartbeat.timeout_ms       its own timeout, so a longer interval on one side is a false
//                              failover on the other; the join grace and the backup's fail-stop
//                              clock use the timeout too.
//   tun.mtu                    sets the MSS each kernel advertises: the client sizes its segments
//                              by the SYN-ACK it saw, and the other node must take (and the
//                              backup relay, host.cpp) segments of that size.
//   limits.max_connections     a connection one node admits and the other refuses is served by one
//                              node alone, unprotected without anyone knowing.
//   limits.max_body_bytes      decides a 413 from the bytes: a backup that takes over must answer
//                              a request exactly as the primary would have.
//   node.client_address,       change the bytes sent to the web server: a backup that takes over
//   node.request_id_header     must send a request as the primary did (a regenerated reply is
//                              compared with the one begun; an exactly-once back-end must see the
//                              same id), so these two node.* keys are shared, unlike the others.
// Each node's own (not compared): the other node.* keys and service.interface, tun.name,
// peer.address and peer.key_file (the key is checked by every frame's authentication), log.level,
// log.format, hooks.* (what a host does when its node becomes the front is its own business),
// and
//   tun.address, tun.prefix    the made-up client addresses are picked by each node's packet layer
//                              and never cross the wire (ConnKey is the real client's).
//   limits.replication_window_bytes, limits.idle_timeout_ms, limits.request_buffer_bytes,
//   limits.header_timeout_ms, limits.body_timeout_ms, limits.max_connections_per_source,
//   limits.send_timeout_ms, limits.request_buffer_total_bytes
//                              used by the serving node only (reads from its web server, idle
//                              and slow-client closes and refusals, which it replicates); the
//                              other's apply after it takes over.
//   limits.close_timeout_ms    each node ends its own copy of a closing connection; the client
//                              has been told everything by then.
//   limits.half_open_timeout_ms, limits.flow_idle_timeout_ms
//                              each node's packet layer forgets its own flows; a client segment
//                              of a flow one node forgot is dropped there, as any unknown one.
//   limits.request_cache_bytes used by the backup only; the primary learns of a full cache
//                              through the window edge in Has.
// Keeping these per node lets an operator change them by a rolling restart (handover, rejoin).
SharedSettings shared_settings(const Config& c) {
  return {
      {"service.advertised", c.service.advertised.to_string()},
      {"peer.port", std::to_string(c.peer.port)},
      {"heartbeat.interval_ms", std::to_string(c.heartbeat.interval_ms)},
      {"heartbeat.timeout_ms", std::to_string(c.heartbeat.timeout_ms)},
      {"tun.mtu", std::to_string(c.tun.mtu)},
      {"limits.max_connections", std::to_string(c.limits.max_connections)},
      {"limits.max_body_bytes", std::to_string(c.limits.max_body_bytes)},
      {"node.client_address", to_string(c.node.client_address)},
      {"node.request_id_header", quote(c.node.request_id_header)},
  };
}

std::optional<std::string> settings_mismatch(const SharedSettings& ours,
                                             const SharedSettings& peers) {
  auto find = [](const SharedSettings& s, const std::string& key) -> const std::string* {
    for (const auto& [k, v] : s)
      if (k == key) return &v;
    return nullptr;
  };
  std::string diffs;
  auto note = [&](const std::string& key, const std::string* mine, const std::string* theirs) {
    diffs += diffs.empty() ? "" : ", ";
    diffs +=
        key + " (ours " + (mine ? *mine : "none") + ", peer's " + (theirs ? *theirs : "none") + ")";
  };
  for (const auto& [k, v] : ours) {
    const std::string* theirs = find(peers, k);
    if (theirs == nullptr || *theirs != v) note(k, &v, theirs);
  }
  // Keys only the peer has: a version that shares more than this one does.
  for (const auto& [k, v] : peers)
    if (find(ours, k) == nullptr) note(k, nullptr, &v);
  if (diffs.empty()) return std::nullopt;
  return "the peer's config differs from ours: " + diffs;
}

Result<Config, ConfigError> load_config(const fs::path& file) {
  std::error_code ec;
  fs::path abs = fs::absolute(file, ec);
  if (ec)
    return Err{
        ConfigError{"(file)", "cannot resolve " + quote(file.string()) + ": " + ec.message()}};
  abs = abs.lexically_normal();
  auto text = read_small_file(abs, 1 << 20);
  if (!text) return Err{ConfigError{"(file)", text.error()}};
  auto cfg = parse_config(*text, abs.parent_path());
  if (cfg) cfg->source = abs;
  return cfg;
}

}  // namespace us::config
