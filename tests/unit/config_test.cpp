#include "config/config.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <string>

namespace us::config {
namespace {

namespace fs = std::filesystem;

constexpr char kKeyHex[] = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

// The example from the config issue.
constexpr char kExample[] = R"(
[service]
advertised = "198.18.0.100:80"   # the IP:port clients use
interface  = "eth0"              # LAN interface shared with the peer
[node]
role    = "primary"              # or "backup"
address = "198.18.0.11"          # this node's own LAN address
server  = "127.0.0.1:8080"       # the web server this node forwards to
[peer]
address  = "198.18.0.12"
key_file = "peer.key"            # relative paths are relative to the config file's directory
[heartbeat]
interval_ms = 20
timeout_ms  = 100
)";

class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A parameterised test's name has a '/' ("Rejected/MaxConnectionsZero"): one directory each,
    // so that TearDown removes all it made.
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(name.begin(), name.end(), '/', '_');
    dir_ = fs::temp_directory_path() /
           ("understudy_config_test_" + std::to_string(::getpid()) + "_" + name);
    fs::create_directories(dir_);
    write("peer.key", std::string(kKeyHex) + "\n");
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const std::string& name, const std::string& text) {
    std::ofstream(dir_ / name) << text;
    fs::permissions(dir_ / name, fs::perms::owner_read | fs::perms::owner_write);
  }

  // The example with `from` replaced by `to` (which must occur).
  static std::string example_with(const std::string& from, const std::string& to) {
    std::string s = kExample;
    auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    if (at != std::string::npos) s.replace(at, from.size(), to);
    return s;
  }

  ConfigError expect_error(const std::string& text) {
    auto r = parse_config(text, dir_);
    EXPECT_FALSE(r.ok());
    if (r.ok()) return {};
    return r.error();
  }

  fs::path dir_;
};

TEST_F(ConfigTest, ExampleParses) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  const Config& c = *r;
  EXPECT_EQ(c.service.advertised.to_string(), "198.18.0.100:80");
  EXPECT_EQ(c.service.interface, "eth0");
  EXPECT_EQ(c.node.role, Role::Primary);
  EXPECT_EQ(c.node.address.to_string(), "198.18.0.11");
  EXPECT_EQ(c.node.server.to_string(), "127.0.0.1:8080");
  EXPECT_EQ(c.peer.address.to_string(), "198.18.0.12");
  EXPECT_EQ(c.heartbeat.interval_ms, 20u);
  EXPECT_EQ(c.heartbeat.timeout_ms, 100u);
  ASSERT_EQ(c.peer.key.size(), 32u);
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(c.peer.key[i], i);
}

TEST_F(ConfigTest, DefaultsFilled) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  const Config& c = *r;
  EXPECT_EQ(c.peer.port, 7400);
  EXPECT_EQ(c.node.control_socket, fs::path("/run/understudy/primary.sock"));
  EXPECT_EQ(c.node.startup_wait_ms, 3000u);
  EXPECT_EQ(c.node.user, "nobody");
  EXPECT_EQ(c.tun.name, "understudy0");
  EXPECT_EQ(c.tun.address.to_string(), "198.19.0.1");
  EXPECT_EQ(c.tun.prefix, 16);
  EXPECT_EQ(c.tun.mtu, 1400);
  EXPECT_EQ(c.limits.max_connections, 16384u);
  EXPECT_EQ(c.limits.request_cache_bytes, 268435456u);
  EXPECT_EQ(c.limits.replication_window_bytes, 262144u);
  EXPECT_EQ(c.limits.idle_timeout_ms, 120000u);
  EXPECT_EQ(c.limits.max_body_bytes, 134217728u);
  EXPECT_EQ(c.limits.request_buffer_bytes, 262144u);
  EXPECT_EQ(c.limits.header_timeout_ms, 60000u);
  EXPECT_EQ(c.limits.body_timeout_ms, 60000u);
  EXPECT_EQ(c.limits.close_timeout_ms, 30000u);
  EXPECT_EQ(c.limits.max_connections_per_source, 512u);
  EXPECT_EQ(c.limits.send_timeout_ms, 60000u);
  EXPECT_EQ(c.limits.request_buffer_total_bytes, 268435456u);
  EXPECT_EQ(c.limits.syn_cookie_threshold, 256u);
  EXPECT_EQ(c.log.level, LogLevel::Info);
  EXPECT_TRUE(c.source.empty());
}

TEST_F(ConfigTest, BackupDefaultControlSocket) {
  auto r = parse_config(example_with("\"primary\"", "\"backup\""), dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->node.role, Role::Backup);
  EXPECT_EQ(r->node.control_socket, fs::path("/run/understudy/backup.sock"));
  EXPECT_STREQ(to_string(Role::Backup), "backup");
  EXPECT_STREQ(to_string(Role::Primary), "primary");
}

TEST_F(ConfigTest, OptionalKeysOverride) {
  std::string text = example_with("[peer]\n", "[peer]\nport = 9000\n") + R"(
[tun]
name = "us1"
address = "10.99.0.1"
prefix = 24
mtu = 9000
[limits]
max_connections = 10
request_cache_bytes = 1000
replication_window_bytes = 2000
max_body_bytes = 3000
request_buffer_bytes = 4000
header_timeout_ms = 500
body_timeout_ms = 600
close_timeout_ms = 700
max_connections_per_source = 0
send_timeout_ms = 800
request_buffer_total_bytes = 9000
[log]
level = "debug"
)";
  auto at = text.find("[node]\n");
  text.insert(at + 7,
              "control_socket = \"run/ctl.sock\"\nstartup_wait_ms = 0\nuser = \"under-study\"\n");
  auto r = parse_config(text, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->peer.port, 9000);
  EXPECT_EQ(r->node.control_socket, dir_ / "run/ctl.sock");
  EXPECT_EQ(r->node.startup_wait_ms, 0u);
  EXPECT_EQ(r->node.user, "under-study");
  EXPECT_EQ(r->tun.name, "us1");
  EXPECT_EQ(r->tun.address.to_string(), "10.99.0.1");
  EXPECT_EQ(r->tun.prefix, 24);
  EXPECT_EQ(r->tun.mtu, 9000);
  EXPECT_EQ(r->limits.max_connections, 10u);
  EXPECT_EQ(r->limits.request_cache_bytes, 1000u);
  EXPECT_EQ(r->limits.replication_window_bytes, 2000u);
  EXPECT_EQ(r->limits.max_body_bytes, 3000u);
  EXPECT_EQ(r->limits.request_buffer_bytes, 4000u);
  EXPECT_EQ(r->limits.header_timeout_ms, 500u);
  EXPECT_EQ(r->limits.body_timeout_ms, 600u);
  EXPECT_EQ(r->limits.close_timeout_ms, 700u);
  EXPECT_EQ(r->limits.max_connections_per_source, 0u);
  EXPECT_EQ(r->limits.send_timeout_ms, 800u);
  EXPECT_EQ(r->limits.request_buffer_total_bytes, 9000u);
  EXPECT_EQ(r->log.level, LogLevel::Debug);
}

TEST_F(ConfigTest, RelativeKeyPathResolvedAgainstConfigDir) {
  fs::create_directories(dir_ / "keys");
  write("keys/peer.key", kKeyHex);
  auto r = parse_config(example_with("\"peer.key\"", "\"keys/../keys/peer.key\""), dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->peer.key_file, dir_ / "keys/peer.key");
}

TEST_F(ConfigTest, AbsoluteKeyPathKept) {
  auto abs = (dir_ / "peer.key").string();
  auto r = parse_config(example_with("\"peer.key\"", "\"" + abs + "\""), dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->peer.key_file, fs::path(abs));
}

TEST_F(ConfigTest, LoadConfigFromFile) {
  write("node.toml", kExample);
  // Loaded from another working directory, the key is still found next to the config.
  auto r = load_config(dir_ / "sub" / ".." / "node.toml");
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->source, dir_ / "node.toml");
  EXPECT_EQ(r->peer.key_file, dir_ / "peer.key");
  EXPECT_EQ(r->peer.key.size(), 32u);
}

TEST_F(ConfigTest, LoadConfigMissingFile) {
  auto r = load_config(dir_ / "absent.toml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().key, "(file)");
  EXPECT_NE(r.error().message.find("absent.toml"), std::string::npos) << r.error().line();
}

TEST_F(ConfigTest, LineFormat) {
  auto e = expect_error(example_with("timeout_ms  = 100", "timeout_ms = 30"));
  EXPECT_EQ(e.line(),
            "heartbeat.timeout_ms: must be at least 2 x interval_ms (got 30, interval 20)");
}

TEST_F(ConfigTest, SyntaxError) {
  auto e = expect_error(example_with("interval_ms = 20", "interval_ms = = 20"));
  EXPECT_EQ(e.key, "(syntax)");
  EXPECT_EQ(e.message.rfind("line 13, column ", 0), 0u) << e.line();
}

TEST_F(ConfigTest, DuplicateKeyIsSyntaxError) {
  auto e = expect_error(example_with("interval_ms = 20", "interval_ms = 20\ninterval_ms = 30"));
  EXPECT_EQ(e.key, "(syntax)");
}

struct Case {
  const char* name;
  std::string from, to;
  std::string key;
  std::string message;  // exact, or a prefix when it ends with '*'
};

class ConfigRuleTest : public ConfigTest, public ::testing::WithParamInterface<Case> {};

TEST_P(ConfigRuleTest, Rejected) {
  const Case& c = GetParam();
  auto e = expect_error(example_with(c.from, c.to));
  EXPECT_EQ(e.key, c.key) << e.line();
  if (!c.message.empty() && c.message.back() == '*')
    EXPECT_EQ(e.message.rfind(c.message.substr(0, c.message.size() - 1), 0), 0u) << e.line();
  else
    EXPECT_EQ(e.message, c.message);
}

const std::string kNode = "[node]\n", kPeer = "[peer]\n", kHb = "[heartbeat]\n";

INSTANTIATE_TEST_SUITE_P(
    Rules, ConfigRuleTest,
    ::testing::Values(
        // Required keys and tables.
        Case{"MissingAdvertised", "advertised = \"198.18.0.100:80\"", "", "service.advertised",
             "required key missing"},
        Case{"MissingInterface", "interface  = \"eth0\"", "", "service.interface",
             "required key missing"},
        Case{"MissingRole", "role    = \"primary\"", "", "node.role", "required key missing"},
        Case{"MissingNodeAddress", "address = \"198.18.0.11\"", "", "node.address",
             "required key missing"},
        Case{"MissingServer", "server  = \"127.0.0.1:8080\"", "", "node.server",
             "required key missing"},
        Case{"MissingPeerAddress", "address  = \"198.18.0.12\"", "", "peer.address",
             "required key missing"},
        Case{"MissingKeyFile", "key_file = \"peer.key\"", "", "peer.key_file",
             "required key missing"},
        Case{"MissingInterval", "interval_ms = 20", "", "heartbeat.interval_ms",
             "required key missing"},
        Case{"MissingTimeout", "timeout_ms  = 100", "", "heartbeat.timeout_ms",
             "required key missing"},
        Case{"MissingTable", "[heartbeat]\ninterval_ms = 20\ntimeout_ms  = 100\n", "", "heartbeat",
             "required table missing"},
        // Types.
        Case{"IntervalNotInteger", "interval_ms = 20", "interval_ms = \"20\"",
             "heartbeat.interval_ms", "expected an integer (got a string)"},
        Case{"IntervalFloat", "interval_ms = 20", "interval_ms = 20.5", "heartbeat.interval_ms",
             "expected an integer (got a float)"},
        Case{"RoleNotString", "role    = \"primary\"", "role = 1", "node.role",
             "expected a string (got an integer)"},
        Case{"TableIsValue", "[service]", "log = 5\n[service]", "log",
             "expected a table (got an integer)"},
        // Addresses and ports.
        Case{"NodeAddressNotQuad", "\"198.18.0.11\"", "\"198.18.11\"", "node.address",
             "expected a dotted-quad IPv4 address (got \"198.18.11\")"},
        Case{"PeerAddressHostname", "\"198.18.0.12\"", "\"peer.lan\"", "peer.address",
             "expected a dotted-quad IPv4 address (got \"peer.lan\")"},
        Case{"NodeAddressBroadcast", "\"198.18.0.11\"", "\"255.255.255.255\"", "node.address",
             "must be a unicast address (got \"255.255.255.255\")"},
        Case{"AdvertisedNoPort", "\"198.18.0.100:80\"", "\"198.18.0.100\"", "service.advertised",
             "expected IPv4:port (got \"198.18.0.100\")"},
        Case{"AdvertisedPortZero", "\"198.18.0.100:80\"", "\"198.18.0.100:0\"",
             "service.advertised", "port must be between 1 and 65535 (got \"198.18.0.100:0\")"},
        Case{"ServerPortTooBig", "\"127.0.0.1:8080\"", "\"127.0.0.1:65536\"", "node.server",
             "port must be between 1 and 65535 (got \"127.0.0.1:65536\")"},
        Case{"ServerBadIp", "\"127.0.0.1:8080\"", "\"localhost:8080\"", "node.server",
             "expected a dotted-quad IPv4 address before ':' (got \"localhost:8080\")"},
        Case{"PeerPortZero", kPeer, kPeer + "port = 0\n", "peer.port",
             "must be between 1 and 65535 (got 0)"},
        Case{"PeerPortTooBig", kPeer, kPeer + "port = 65536\n", "peer.port",
             "must be between 1 and 65535 (got 65536)"},
        // Role.
        Case{"BadRole", "\"primary\"", "\"master\"", "node.role",
             "must be \"primary\" or \"backup\" (got \"master\")"},
        // Distinct addresses.
        Case{"SameNodeAndPeer", "\"198.18.0.12\"", "\"198.18.0.11\"", "peer.address",
             "must differ from node.address (both 198.18.0.11)"},
        Case{"AdvertisedIsNode", "\"198.18.0.100:80\"", "\"198.18.0.11:80\"", "service.advertised",
             "IP must differ from node.address (both 198.18.0.11)"},
        Case{"AdvertisedIsPeer", "\"198.18.0.100:80\"", "\"198.18.0.12:80\"", "service.advertised",
             "IP must differ from peer.address (both 198.18.0.12)"},
        // Heartbeat.
        Case{"IntervalZero", "interval_ms = 20", "interval_ms = 0", "heartbeat.interval_ms",
             "must be between 1 and 4294967295 (got 0)"},
        Case{"IntervalNegative", "interval_ms = 20", "interval_ms = -5", "heartbeat.interval_ms",
             "must be between 1 and 4294967295 (got -5)"},
        Case{"TimeoutTooShort", "timeout_ms  = 100", "timeout_ms = 30", "heartbeat.timeout_ms",
             "must be at least 2 x interval_ms (got 30, interval 20)"},
        // Unknown tables and keys.
        Case{"TypoKey", "timeout_ms  = 100", "timeout_ms = 100\ntimout_ms = 100",
             "heartbeat.timout_ms", "unknown key"},
        Case{"UnknownTable", kHb, "[hearbeat]\nx = 1\n" + kHb, "hearbeat", "unknown table"},
        Case{"UnknownTopLevelKey", "[service]", "verbose = true\n[service]", "verbose",
             "unknown key"},
        Case{"UnknownSubtable", kNode, kNode + "extra.x = 1\n", "node.extra", "unknown key"},
        // Key file.
        Case{"KeyFileMissing", "\"peer.key\"", "\"nope.key\"", "peer.key_file", "cannot read *"},
        // Tun.
        Case{"TunPrefixSmall", kHb, "[tun]\nprefix = 7\n" + kHb, "tun.prefix",
             "must be between 8 and 30 (got 7)"},
        Case{"TunPrefixLarge", kHb, "[tun]\nprefix = 31\n" + kHb, "tun.prefix",
             "must be between 8 and 30 (got 31)"},
        Case{"TunMtuSmall", kHb, "[tun]\nmtu = 575\n" + kHb, "tun.mtu",
             "must be between 576 and 9000 (got 575)"},
        Case{"TunMtuLarge", kHb, "[tun]\nmtu = 9001\n" + kHb, "tun.mtu",
             "must be between 576 and 9000 (got 9001)"},
        Case{"TunOverlapsLan", kHb, "[tun]\naddress = \"198.18.0.1\"\n" + kHb, "tun.address",
             "198.18.0.1/16 must not contain service.advertised (198.18.0.100)"},
        Case{"TunNameTooLong", kHb, "[tun]\nname = \"abcdefghijklmnop\"\n" + kHb, "tun.name",
             "must be an interface name*"},
        Case{"InterfaceEmpty", "\"eth0\"", "\"\"", "service.interface",
             "must be an interface name*"},
        // Limits and log.
        Case{"MaxConnectionsZero", kHb, "[limits]\nmax_connections = 0\n" + kHb,
             "limits.max_connections", "must be between 1 and 9223372036854775807 (got 0)"},
        Case{"HeaderTimeoutTooShort", kHb, "[limits]\nheader_timeout_ms = 99\n" + kHb,
             "limits.header_timeout_ms", "must be between 100 and 9223372036854775807 (got 99)"},
        Case{"SendTimeoutTooShort", kHb, "[limits]\nsend_timeout_ms = 99\n" + kHb,
             "limits.send_timeout_ms", "must be between 100 and 9223372036854775807 (got 99)"},
        Case{"RequestBufferTotalZero", kHb, "[limits]\nrequest_buffer_total_bytes = 0\n" + kHb,
             "limits.request_buffer_total_bytes",
             "must be between 1 and 9223372036854775807 (got 0)"},
        Case{"SynCookieThresholdNegative", kHb, "[limits]\nsyn_cookie_threshold = -1\n" + kHb,
             "limits.syn_cookie_threshold", "must be between 0 and 9223372036854775807 (got -1)"},
        Case{"HalfOpenTimeoutTooShort", kHb, "[limits]\nhalf_open_timeout_ms = 99\n" + kHb,
             "limits.half_open_timeout_ms", "must be between 100 and 9223372036854775807 (got 99)"},
        Case{"FlowIdleBelowTwiceTheIdleTimeout", kHb,
             "[limits]\nidle_timeout_ms = 60000\nflow_idle_timeout_ms = 119999\n" + kHb,
             "limits.flow_idle_timeout_ms",
             "must be at least 2 x idle_timeout_ms (got 119999, idle timeout 60000)"},
        Case{"BadLogLevel", kHb, "[log]\nlevel = \"verbose\"\n" + kHb, "log.level",
             "must be one of trace, debug, info, warn, error (got \"verbose\")"},
        Case{"ServerIsAdvertised", "\"127.0.0.1:8080\"", "\"198.18.0.100:80\"", "node.server",
             "must differ from service.advertised (both 198.18.0.100:80)"},
        Case{"ControlSocketTooLong", kNode,
             kNode + "control_socket = \"/" + std::string(120, 'x') + "\"\n", "node.control_socket",
             "path is too long for a Unix socket (121 bytes, at most 107)"},
        Case{"UserEmpty", kNode, kNode + "user = \"\"\n", "node.user",
             "must be a user name (letters, digits, '_', '-', '.'; got \"\")"},
        Case{"UserNotAName", kNode, kNode + "user = \"root:x\"\n", "node.user",
             "must be a user name (letters, digits, '_', '-', '.'; got \"root:x\")"},
        // The client's identity (issue 12).
        Case{"ClientAddressUnknown", kNode, kNode + "client_address = \"forwarded\"\n",
             "node.client_address",
             "must be \"none\", \"x-forwarded-for\" or \"proxy-v2\" (got \"forwarded\")"},
        Case{"ClientAddressNotAString", kNode, kNode + "client_address = 1\n",
             "node.client_address", "expected a string (got an integer)"},
        Case{"RequestIdHeaderNotAToken", kNode, kNode + "request_id_header = \"Request Id\"\n",
             "node.request_id_header",
             "must be a header field name: 1 to 64 letters, digits or !#$%&'*+-.^_`|~ (got "
             "\"Request Id\")"},
        Case{"RequestIdHeaderWithColon", kNode, kNode + "request_id_header = \"Id:\"\n",
             "node.request_id_header", "must be a header field name: *"},
        Case{"RequestIdHeaderTooLong", kNode,
             kNode + "request_id_header = \"" + std::string(65, 'X') + "\"\n",
             "node.request_id_header", "must be a header field name: *"},
        Case{"RequestIdHeaderIsHost", kNode, kNode + "request_id_header = \"HOST\"\n",
             "node.request_id_header",
             "must not be a field the proxy or HTTP framing owns (got \"HOST\")"},
        Case{"RequestIdHeaderIsXRealIp", kNode, kNode + "request_id_header = \"X-Real-IP\"\n",
             "node.request_id_header", "must not be a field the proxy or HTTP framing owns*"}),
    [](const ::testing::TestParamInfo<Case>& p) { return std::string(p.param.name); });

TEST_F(ConfigTest, BadKeyContents) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "key is empty"},
      {"abcd\n", "key must be 64 hex characters (32 bytes), got 4"},
      {std::string(63, 'a') + "g", "key has a non-hex character 'g' at position 63"},
  };
  for (const auto& [contents, why] : cases) {
    write("bad.key", contents);
    auto e = expect_error(example_with("\"peer.key\"", "\"bad.key\""));
    EXPECT_EQ(e.key, "peer.key_file");
    EXPECT_NE(e.message.find(why), std::string::npos) << e.line();
  }
}

TEST_F(ConfigTest, KeyFileIsDirectory) {
  fs::create_directories(dir_ / "keydir");
  auto e = expect_error(example_with("\"peer.key\"", "\"keydir\""));
  EXPECT_EQ(e.key, "peer.key_file");
  EXPECT_NE(e.message.find("not a regular file"), std::string::npos) << e.line();
}

// Issue 10: the key authenticates every frame between the nodes; a key file others can read is
// refused with the fix in the message.
TEST_F(ConfigTest, KeyFileReadableByOthers_RefusedWithChmod) {
  for (auto extra : {fs::perms::group_read, fs::perms::others_read}) {
    fs::permissions(dir_ / "peer.key", fs::perms::owner_read | fs::perms::owner_write | extra);
    auto e = expect_error(kExample);
    EXPECT_EQ(e.key, "peer.key_file");
    EXPECT_NE(e.message.find("readable by group or others"), std::string::npos) << e.line();
    EXPECT_NE(e.message.find("chmod 600 " + (dir_ / "peer.key").string()), std::string::npos)
        << e.line();
  }
  fs::permissions(dir_ / "peer.key", fs::perms::owner_read);
  EXPECT_TRUE(parse_config(kExample, dir_).ok());
}

TEST_F(ConfigTest, LogLevels) {
  for (const char* level : {"trace", "debug", "info", "warn", "error"}) {
    auto r = parse_config(std::string(kExample) + "[log]\nlevel = \"" + level + "\"\n", dir_);
    ASSERT_TRUE(r.ok()) << r.error().line();
    EXPECT_STREQ(to_string(r->log.level), level);
  }
}

// ---- log.format (docs/LOGS.md)

TEST_F(ConfigTest, LogFormat_TextByDefault) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->log.format, LogFormat::Text);
  auto level_only = parse_config(std::string(kExample) + "[log]\nlevel = \"debug\"\n", dir_);
  ASSERT_TRUE(level_only.ok()) << level_only.error().line();
  EXPECT_EQ(level_only->log.format, LogFormat::Text);
}

TEST_F(ConfigTest, LogFormat_TextAndJson) {
  for (auto [text, format] : {std::pair{"text", LogFormat::Text}, {"json", LogFormat::Json}}) {
    auto r = parse_config(std::string(kExample) + "[log]\nformat = \"" + text + "\"\n", dir_);
    ASSERT_TRUE(r.ok()) << r.error().line();
    EXPECT_EQ(r->log.format, format);
    EXPECT_STREQ(to_string(r->log.format), text);
  }
}

TEST_F(ConfigTest, LogFormat_OtherValuesNameTheKey) {
  for (const char* value : {"\"JSON\"", "\"xml\"", "\"\"", "5", "true"}) {
    auto r = parse_config(std::string(kExample) + "[log]\nformat = " + value + "\n", dir_);
    ASSERT_FALSE(r.ok()) << value;
    EXPECT_EQ(r.error().key, "log.format") << r.error().line();
  }
  auto r = parse_config(std::string(kExample) + "[log]\nformat = \"xml\"\n", dir_);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().line(), "log.format: must be text or json (got \"xml\")");
}

// ---- [metrics] (docs/METRICS.md)

TEST_F(ConfigTest, Metrics_OffByDefaultAndWhenEmpty) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_FALSE(r->metrics.listen.has_value());
  r = parse_config(std::string(kExample) + "[metrics]\nlisten = \"\"\n", dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_FALSE(r->metrics.listen.has_value());
}

TEST_F(ConfigTest, Metrics_ListenParsed) {
  for (const char* text : {"127.0.0.1:9464", "0.0.0.0:9464", "198.18.0.11:9100"}) {
    auto r = parse_config(std::string(kExample) + "[metrics]\nlisten = \"" + text + "\"\n", dir_);
    ASSERT_TRUE(r.ok()) << r.error().line();
    ASSERT_TRUE(r->metrics.listen.has_value());
    EXPECT_EQ(r->metrics.listen->to_string(), text);
  }
}

TEST_F(ConfigTest, Metrics_BadListenNamesTheKey) {
  for (const char* text :
       {"9464", "localhost:9464", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:70000", "224.0.0.1:9464",
        "255.255.255.255:9464", "198.18.0.100:9464", "198.18.0.11:7400", "0.0.0.0:7400"}) {
    auto e = expect_error(std::string(kExample) + "[metrics]\nlisten = \"" + text + "\"\n");
    EXPECT_EQ(e.key, "metrics.listen") << text << ": " << e.line();
  }
  EXPECT_EQ(expect_error(std::string(kExample) + "[metrics]\nlisten = 9464\n").key,
            "metrics.listen");
  EXPECT_EQ(expect_error(std::string(kExample) + "[metrics]\nport = 9464\n").key, "metrics.port");
}

// ---- [hooks] (docs/CONFIG.md; run by node/hooks)

class HooksConfigTest : public ConfigTest {
 protected:
  // A file in the test directory with `mode`; returns its absolute path.
  std::string script(const std::string& name, fs::perms mode) {
    std::ofstream(dir_ / name) << "#!/bin/sh\n";
    fs::permissions(dir_ / name, mode);
    return (dir_ / name).string();
  }
  static std::string hooks(const std::string& body) {
    return std::string(kExample) + "[hooks]\n" + body;
  }
};

constexpr auto kRwxRxRx = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                          fs::perms::others_read | fs::perms::others_exec;

TEST_F(HooksConfigTest, OffByDefault) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_TRUE(r->hooks.on_front.empty());
  EXPECT_TRUE(r->hooks.on_alone.empty());
  EXPECT_EQ(r->hooks.timeout_ms, 30000u);
  r = parse_config(hooks("on_front = \"\"\non_alone = \"\"\n"), dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_TRUE(r->hooks.on_front.empty());
}

TEST_F(HooksConfigTest, ExecutablesParsed) {
  auto front = script("front.sh", kRwxRxRx);
  auto alone = script("alone.sh", fs::perms::owner_all);
  auto r = parse_config(
      hooks("on_front = \"" + front + "\"\non_alone = \"" + alone + "\"\ntimeout_ms = 500\n"),
      dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  EXPECT_EQ(r->hooks.on_front, front);
  EXPECT_EQ(r->hooks.on_alone, alone);
  EXPECT_EQ(r->hooks.timeout_ms, 500u);
}

TEST_F(HooksConfigTest, BadHookNamesTheKey) {
  auto plain = script("plain.sh", fs::perms::owner_read | fs::perms::owner_write);
  auto shared = script("shared.sh", kRwxRxRx | fs::perms::group_write);
  auto open_to_all = script("open.sh", kRwxRxRx | fs::perms::others_write);
  fs::create_directories(dir_ / "dir");
  struct BadHook {
    std::string value, says;
  };
  for (const auto& [value, says] :
       {BadHook{"front.sh", "absolute"}, BadHook{(dir_ / "missing.sh").string(), "does not exist"},
        BadHook{(dir_ / "dir").string(), "not a regular file"}, BadHook{plain, "not executable"},
        BadHook{shared, "writable by group or others"},
        BadHook{open_to_all, "writable by group or others"}}) {
    for (const char* key : {"on_front", "on_alone"}) {
      auto e = expect_error(hooks(std::string(key) + " = \"" + value + "\"\n"));
      EXPECT_EQ(e.key, std::string("hooks.") + key) << value << ": " << e.line();
      EXPECT_NE(e.message.find(says), std::string::npos) << e.line();
    }
  }
  EXPECT_EQ(expect_error(hooks("on_front = 1\n")).key, "hooks.on_front");
  EXPECT_EQ(expect_error(hooks("timeout_ms = 50\n")).key, "hooks.timeout_ms");
  EXPECT_EQ(expect_error(hooks("on_backup = \"/bin/true\"\n")).key, "hooks.on_backup");
}

TEST_F(HooksConfigTest, NotSharedWithThePeer) {
  auto front = script("front.sh", kRwxRxRx);
  auto with = parse_config(hooks("on_front = \"" + front + "\"\n"), dir_);
  auto without = parse_config(kExample, dir_);
  ASSERT_TRUE(with.ok() && without.ok());
  EXPECT_EQ(settings_mismatch(shared_settings(*with), shared_settings(*without)), std::nullopt);
}

// ---- the settings both nodes must share (peer::Hello carries them; the node compares)

TEST_F(ConfigTest, SharedSettings_ExampleInOrder) {
  auto r = parse_config(kExample, dir_);
  ASSERT_TRUE(r.ok()) << r.error().line();
  const SharedSettings expected{
      {"service.advertised", "198.18.0.100:80"},
      {"peer.port", "7400"},
      {"heartbeat.interval_ms", "20"},
      {"heartbeat.timeout_ms", "100"},
      {"tun.mtu", "1400"},
      {"limits.max_connections", "16384"},
      {"limits.max_body_bytes", "134217728"},
      {"node.client_address", "none"},
      {"node.request_id_header", "\"\""},
  };
  EXPECT_EQ(shared_settings(*r), expected);
}

// Issue 12: off by default; both values and every mode parse.
TEST_F(ConfigTest, ClientIdentity_DefaultsOffAndValuesParse) {
  auto d = parse_config(kExample, dir_);
  ASSERT_TRUE(d.ok()) << d.error().line();
  EXPECT_EQ(d->node.client_address, ClientAddress::None);
  EXPECT_EQ(d->node.request_id_header, "");
  for (const char* mode : {"none", "x-forwarded-for", "proxy-v2"}) {
    auto r = parse_config(example_with("[node]\n", std::string("[node]\nclient_address = \"") +
                                                       mode + "\"\nrequest_id_header = \"X-Id\"\n"),
                          dir_);
    ASSERT_TRUE(r.ok()) << r.error().line();
    EXPECT_STREQ(to_string(r->node.client_address), mode);
    EXPECT_EQ(r->node.request_id_header, "X-Id");
  }
  auto empty = parse_config(example_with("[node]\n", "[node]\nrequest_id_header = \"\"\n"), dir_);
  ASSERT_TRUE(empty.ok()) << empty.error().line();
  EXPECT_EQ(empty->node.request_id_header, "");
}

// Both keys change the bytes sent upstream, which a takeover sends again: a pair that differs in
// either never forms.
TEST_F(ConfigTest, SharedSettings_ClientIdentityKeysMustMatch) {
  auto ours = parse_config(kExample, dir_);
  auto peers = parse_config(example_with("[node]\n",
                                         "[node]\nclient_address = \"proxy-v2\"\n"
                                         "request_id_header = \"Idempotency-Key\"\n"),
                            dir_);
  ASSERT_TRUE(ours.ok()) << ours.error().line();
  ASSERT_TRUE(peers.ok()) << peers.error().line();
  EXPECT_EQ(settings_mismatch(shared_settings(*ours), shared_settings(*peers)),
            "the peer's config differs from ours: node.client_address (ours none, peer's "
            "proxy-v2), node.request_id_header (ours \"\", peer's \"Idempotency-Key\")");
}

// The backup's config of the example pair, with every setting that is each node's own changed:
// the two still agree.
TEST_F(ConfigTest, SharedSettings_PairWithItsOwnSettingsAgrees) {
  std::string backup = kExample;
  auto swap = [&](const std::string& from, const std::string& to) {
    auto at = backup.find(from);
    ASSERT_NE(at, std::string::npos) << from;
    backup.replace(at, from.size(), to);
  };
  swap("\"primary\"", "\"backup\"");
  swap("address = \"198.18.0.11\"", "address = \"198.18.0.99\"");
  swap("address  = \"198.18.0.12\"", "address  = \"198.18.0.11\"");
  swap("address = \"198.18.0.99\"", "address = \"198.18.0.12\"");
  swap("\"eth0\"", "\"lan1\"");
  swap("127.0.0.1:8080", "127.0.0.1:9090");
  backup += R"(
[tun]
name = "us1"
address = "10.99.0.1"
prefix = 24
[limits]
request_cache_bytes = 1000
replication_window_bytes = 2000
idle_timeout_ms = 5000
request_buffer_bytes = 4000
header_timeout_ms = 500
body_timeout_ms = 600
close_timeout_ms = 700
max_connections_per_source = 3
send_timeout_ms = 900
request_buffer_total_bytes = 5000
syn_cookie_threshold = 0
[log]
level = "debug"
)";
  auto p = parse_config(kExample, dir_);
  auto b = parse_config(backup, dir_);
  ASSERT_TRUE(p.ok()) << p.error().line();
  ASSERT_TRUE(b.ok()) << b.error().line();
  ASSERT_EQ(b->node.role, Role::Backup);
  EXPECT_EQ(shared_settings(*p), shared_settings(*b));
  EXPECT_EQ(settings_mismatch(shared_settings(*p), shared_settings(*b)), std::nullopt);
}

TEST_F(ConfigTest, SettingsMismatch_NamesEveryDifferingKeyWithBothValues) {
  auto ours = parse_config(kExample, dir_);
  auto peers = parse_config(
      example_with("timeout_ms  = 100", "timeout_ms  = 500") + "[tun]\nmtu = 1500\n", dir_);
  ASSERT_TRUE(ours.ok()) << ours.error().line();
  ASSERT_TRUE(peers.ok()) << peers.error().line();
  EXPECT_EQ(settings_mismatch(shared_settings(*ours), shared_settings(*peers)),
            "the peer's config differs from ours: heartbeat.timeout_ms (ours 100, peer's 500), "
            "tun.mtu (ours 1400, peer's 1500)");
  EXPECT_EQ(settings_mismatch(shared_settings(*peers), shared_settings(*ours)),
            "the peer's config differs from ours: heartbeat.timeout_ms (ours 500, peer's 100), "
            "tun.mtu (ours 1500, peer's 1400)");
}

// A peer of another version may share a key more or less: "none" on the side that lacks it.
TEST(SettingsMismatch, KeyOnOneSideOnly) {
  const SharedSettings ours{{"a.x", "1"}, {"a.y", "2"}};
  const SharedSettings peers{{"a.y", "2"}, {"a.z", "3"}};
  EXPECT_EQ(settings_mismatch(ours, peers),
            "the peer's config differs from ours: a.x (ours 1, peer's none), "
            "a.z (ours none, peer's 3)");
  EXPECT_EQ(settings_mismatch(ours, ours), std::nullopt);
  EXPECT_EQ(settings_mismatch({}, {}), std::nullopt);
  // Order does not matter, only keys and values.
  EXPECT_EQ(settings_mismatch(ours, {{"a.y", "2"}, {"a.x", "1"}}), std::nullopt);
}

}  // namespace
}  // namespace us::config
