// The node's TOML configuration: schema, defaults and validation. Keys are fixed by the config
// issue; the example lives in the test (tests/unit/config_test.cpp). Every error names a dotted
// key.
#pragma once
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "core/vocabulary.hpp"
#include "wire/address.hpp"

namespace us::config {

enum class LogLevel { Trace, Debug, Info, Warn, Error };
const char* to_string(LogLevel);

// log.format: today's text lines, or one JSON object a line (docs/LOGS.md).
enum class LogFormat { Text, Json };
const char* to_string(LogFormat);  // as written in the config: "text", "json"

// node.client_address: how the web server learns the client's address (docs/CONFIG.md).
enum class ClientAddress { None, XForwardedFor, ProxyV2 };
const char* to_string(ClientAddress);  // as written in the config: "none", ...

struct Config {
  struct Service {
    wire::Endpoint advertised;  // the IP:port clients use
    std::string interface;      // LAN interface shared with the peer
  } service;
  struct Node {
    Role role = Role::Primary;
    wire::Ipv4Addr address;                // this node's own LAN address
    wire::Endpoint server;                 // the local web server we forward to
    std::filesystem::path control_socket;  // default /run/understudy/<role>.sock
    uint32_t startup_wait_ms = 3000;       // how long a starting node waits for its peer
    // Who the node runs as once its sockets and devices are open ("root": no drop, no syscall
    // filter; docs/CONFIG.md).
    std::string user = "nobody";
    // What the web server learns of each request (docs/CONFIG.md; both shared with the peer):
    // the client's address, and the name of a header carrying a request id ("": none).
    ClientAddress client_address = ClientAddress::None;
    std::string request_id_header;
  } node;
  struct Peer {
    wire::Ipv4Addr address;
    uint16_t port = 7400;            // UDP and TCP between the nodes
    std::filesystem::path key_file;  // resolved against the config's directory
    std::vector<uint8_t> key;        // decoded, 32 bytes
  } peer;
  struct Heartbeat {
    uint32_t interval_ms = 0;
    uint32_t timeout_ms = 0;
  } heartbeat;
  struct Tun {
    std::string name = "understudy0";
    wire::Ipv4Addr address{198, 19, 0, 1};
    uint8_t prefix = 16;
    uint16_t mtu = 1400;
  } tun;
  struct Limits {
    uint64_t max_connections = 16384;
    uint64_t request_cache_bytes = 268435456;
    uint64_t replication_window_bytes = 262144;
    uint64_t idle_timeout_ms = 120000;  // a client connection with nothing to do is closed
    // Hostile clients (docs/CONFIG.md): a larger request body is answered 413 (both nodes);
    // serving: request bytes not yet written to the server per connection; deadlines for a
    // request head, for each gap in a body, and for a closing connection; connections per
    // client address (0: no cap).
    uint64_t max_body_bytes = 134217728;
    uint64_t request_buffer_bytes = 262144;
    uint64_t header_timeout_ms = 60000;
    uint64_t body_timeout_ms = 60000;
    uint64_t close_timeout_ms = 30000;
    uint64_t max_connections_per_source = 512;
    // Serving: the longest gap between two writes of reply bytes to a client that has some
    // waiting (else reset); request bytes waiting for the web server, all connections together.
    uint64_t send_timeout_ms = 60000;
    uint64_t request_buffer_total_bytes = 268435456;
    uint64_t half_open_timeout_ms = 5000;    // a flow whose handshake never completed is dropped
    uint64_t flow_idle_timeout_ms = 600000;  // a flow with no packet either way is dropped
    // Half-open flows from which the front answers SYNs with SYN cookies (0: always).
    uint64_t syn_cookie_threshold = 256;
  } limits;
  struct Log {
    LogLevel level = LogLevel::Info;
    LogFormat format = LogFormat::Text;
  } log;
  // Prometheus metrics (docs/METRICS.md): served over HTTP on this address; off when unset.
  struct Metrics {
    std::optional<wire::Endpoint> listen;
  } metrics;
  // Notify hooks (docs/CONFIG.md, docs/DEPLOY.md): commands run as root by a helper process when
  // this node becomes the front or starts serving alone; empty when unset.
  struct Hooks {
    std::filesystem::path on_front;
    std::filesystem::path on_alone;
    uint64_t timeout_ms = 30000;  // a hook still running then is killed (its process group)
  } hooks;
  std::filesystem::path source;  // the file loaded (absolute); empty from parse_config
};

struct ConfigError {
  std::string key;  // dotted key, or "(syntax)" / "(file)"
  std::string message;
  // "heartbeat.timeout_ms: must be at least 2 x interval_ms (got 30, interval 20)"
  std::string line() const;
};

// Reads, parses and validates `file`, and loads the peer key. Relative paths in it are relative to
// the file's directory.
Result<Config, ConfigError> load_config(const std::filesystem::path& file);

// As load_config, from text; relative paths are resolved against base_dir. The key file is read.
Result<Config, ConfigError> parse_config(std::string_view toml_text,
                                         const std::filesystem::path& base_dir);

// The settings both nodes of a pair must agree on, as (TOML key, value text) in a fixed order; the
// keys are those an operator writes ("heartbeat.timeout_ms"). Each node sends its own in the
// replication channel's Hello (peer::Hello::settings) and compares them with the peer's when the
// channel comes up. config.cpp says why each key is in the list, and why the others are not.
using SharedSettings = std::vector<std::pair<std::string, std::string>>;
SharedSettings shared_settings(const Config& c);

// nullopt if `ours` and `peers` hold the same keys with the same values; otherwise one line naming
// every key that differs (or that one side lacks: "none"), ours first:
// "the peer's config differs from ours: heartbeat.timeout_ms (ours 100, peer's 200)"
std::optional<std::string> settings_mismatch(const SharedSettings& ours,
                                             const SharedSettings& peers);

}  // namespace us::config
