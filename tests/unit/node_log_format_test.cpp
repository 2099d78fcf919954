// The log formats (node/log_format, core/log.hpp; docs/LOGS.md): every JSON line parses and has
// the required keys whatever the message holds; the text format is the old line plus conn=ID.
#include "node/log_format.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "core/log.hpp"

namespace us::node {
namespace {

using nlohmann::json;

const ConnKey kKey{wire::Ipv4Addr(198, 18, 0, 2), 40000, 12345};

// 2026-11-30T06:49:15.123Z
const spdlog::log_clock::time_point kTime =
    spdlog::log_clock::time_point(std::chrono::seconds(1796021355)) +
    std::chrono::milliseconds(123);

std::string format(spdlog::formatter& f, std::string_view msg,
                   spdlog::level::level_enum level = spdlog::level::info,
                   const log::Fields* fields = nullptr) {
  spdlog::details::log_msg m(kTime, spdlog::source_loc{}, "backup", level,
                             spdlog::string_view_t(msg.data(), msg.size()));
  std::optional<log::ScopedFields> scope;
  if (fields) scope.emplace(*fields);
  spdlog::memory_buf_t buf;
  f.format(m, buf);
  return std::string(buf.data(), buf.size());
}

// One line, ending in its only newline, that parses as an object with the four required keys.
json parse_line(const std::string& line) {
  EXPECT_FALSE(line.empty());
  EXPECT_EQ(line.find('\n'), line.size() - 1) << line;
  json j = json::parse(line);  // throws (and fails the test) on anything but JSON
  EXPECT_TRUE(j.is_object());
  for (const char* key : {"ts", "level", "role", "msg"})
    EXPECT_TRUE(j.contains(key) && j[key].is_string()) << key << " in " << line;
  return j;
}

TEST(LogFormat, ConnId_TwelveHexOfTheKeysSha256) {
  // `printf %s 198.18.0.2:40000/isn=12345 | sha256sum | cut -c1-12` (docs/LOGS.md)
  EXPECT_EQ(conn_id(kKey), "74b52d648b16");
  EXPECT_EQ(conn_id(ConnKey{kKey.ip, 40001, 12345}), "0a49ad9831b3");
  EXPECT_NE(conn_id(ConnKey{kKey.ip, 40000, 12346}), conn_id(kKey));
}

TEST(LogFormat, Json_PlainLineHasTheRequiredKeysOnly) {
  auto f = json_formatter();
  std::string line = format(*f, "node: signal SIGTERM: stopping");
  json j = parse_line(line);
  EXPECT_EQ(j["ts"], "2026-11-30T06:49:15.123Z");
  EXPECT_EQ(j["level"], "info");
  EXPECT_EQ(j["role"], "backup");
  EXPECT_EQ(j["msg"], "node: signal SIGTERM: stopping");
  EXPECT_EQ(j.size(), 4u) << j.dump();
  EXPECT_TRUE(line.starts_with(R"({"ts":"2026-11-30T06:49:15.123Z","level":"info","role")"))
      << line;  // in reading order
}

TEST(LogFormat, Json_LevelsAreSpdlogsWords) {
  auto f = json_formatter();
  EXPECT_EQ(parse_line(format(*f, "x", spdlog::level::warn))["level"], "warning");
  EXPECT_EQ(parse_line(format(*f, "x", spdlog::level::err))["level"], "error");
  EXPECT_EQ(parse_line(format(*f, "x", spdlog::level::critical))["level"], "critical");
  EXPECT_EQ(parse_line(format(*f, "x", spdlog::level::debug))["level"], "debug");
}

TEST(LogFormat, Json_FieldsBecomeKeys) {
  auto f = json_formatter();
  log::Fields fields{.event = "conn_takeover",
                     .conn = kKey,
                     .mode = "simplex",
                     .peer = "198.18.0.1",
                     .request = 3,
                     .reason = "idle"};
  json j = parse_line(format(*f, "message: taking over", spdlog::level::info, &fields));
  EXPECT_EQ(j["event"], "conn_takeover");
  EXPECT_EQ(j["conn"], "74b52d648b16");
  EXPECT_EQ(j["client"], "198.18.0.2:40000");
  EXPECT_EQ(j["mode"], "simplex");
  EXPECT_EQ(j["peer"], "198.18.0.1");
  EXPECT_EQ(j["request"], 3);
  EXPECT_EQ(j["reason"], "idle");
  // Fields left empty are not keys.
  log::Fields only_event{.event = "mode_change"};
  json k = parse_line(format(*f, "mode: a -> b", spdlog::level::info, &only_event));
  EXPECT_EQ(k.size(), 5u) << k.dump();
}

TEST(LogFormat, Json_QuotesNewlinesAndControlCharactersAreEscaped) {
  auto f = json_formatter();
  const std::string nasty = std::string("a \"quoted\" \\path\\\nsecond line\r\ttab ") + '\x01' +
                            '\x1f' + '\x7f' + std::string(1, '\0') + " end";
  log::Fields fields{.event = "bad_request", .conn = kKey, .reason = nasty};
  std::string line = format(*f, nasty, spdlog::level::warn, &fields);
  json j = parse_line(line);
  EXPECT_EQ(j["msg"], nasty);  // escaped, not altered
  EXPECT_EQ(j["reason"], nasty);
  for (char c : line.substr(0, line.size() - 1))
    EXPECT_GE(static_cast<unsigned char>(c), 0x20) << "raw control character in " << line;
}

TEST(LogFormat, Json_BytesThatAreNotUtf8BecomeReplacementCharacters) {
  auto f = json_formatter();
  std::string line = format(*f, "http: client sent \xff\xfe\xc3 here");
  json j = parse_line(line);
  std::string msg = j["msg"];
  EXPECT_TRUE(msg.starts_with("http: client sent \xef\xbf\xbd")) << msg;  // U+FFFD
  EXPECT_TRUE(msg.ends_with(" here")) << msg;
}

TEST(LogFormat, Text_TheOldLineWithConnAppended) {
  auto f = text_formatter();
  std::regex old_line(
      R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.123 info  \[backup\] node: signal SIGTERM: stopping\n)");
  EXPECT_TRUE(std::regex_match(format(*f, "node: signal SIGTERM: stopping"), old_line));
  log::Fields fields{.event = "conn_takeover", .conn = kKey, .mode = "simplex"};
  std::string line = format(*f, "message: taking over", spdlog::level::info, &fields);
  EXPECT_TRUE(line.ends_with("[backup] message: taking over conn=74b52d648b16\n")) << line;
  log::Fields no_conn{.event = "mode_change", .mode = "simplex"};
  line = format(*f, "mode: duplex -> simplex", spdlog::level::warn, &no_conn);
  EXPECT_TRUE(line.ends_with("[backup] mode: duplex -> simplex\n")) << line;
}

// Through the default logger, as the daemon logs: the level filter applies before anything is
// formatted, and the fields last for one call only.
class LogThroughLogger : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("primary", sink);
    logger->set_formatter(json_formatter());
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  void TearDown() override { spdlog::set_default_logger(saved_); }
  std::vector<json> lines() {
    std::vector<json> out;
    std::istringstream in(out_.str());
    for (std::string l; std::getline(in, l);) out.push_back(parse_line(l + "\n"));
    return out;
  }
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> saved_;
};

TEST_F(LogThroughLogger, DebugLinesAreDroppedAtInfo) {
  EXPECT_FALSE(log::enabled(spdlog::level::debug));
  EXPECT_TRUE(log::enabled(spdlog::level::info));
  log::debug({.event = "request", .conn = kKey, .request = 0}, "message: {}: request {}",
             kKey.to_string(), 0);
  EXPECT_TRUE(out_.str().empty()) << out_.str();
}

TEST_F(LogThroughLogger, FieldsLastForOneLine) {
  log::info({.event = "conn_takeover", .conn = kKey}, "message: {}: taking over", kKey.to_string());
  EXPECT_EQ(log::current(), nullptr);
  spdlog::info("node: plain");
  auto l = lines();
  ASSERT_EQ(l.size(), 2u);
  EXPECT_EQ(l[0]["msg"], "message: 198.18.0.2:40000/isn=12345: taking over");
  EXPECT_EQ(l[0]["conn"], "74b52d648b16");
  EXPECT_EQ(l[0]["role"], "primary");
  EXPECT_FALSE(l[1].contains("conn"));
  EXPECT_FALSE(l[1].contains("event"));
}

}  // namespace
}  // namespace us::node
