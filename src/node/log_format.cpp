#include "node/log_format.hpp"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <openssl/evp.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <array>
#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

#include "core/log.hpp"

namespace us::node {
namespace {

constexpr const char* kTextPattern = "%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v";

void append(spdlog::memory_buf_t& dest, std::string_view s) {
  dest.append(s.data(), s.data() + s.size());
}

// The %* flag of the text pattern.
class ConnSuffix final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg&, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    const log::Fields* f = log::current();
    if (f == nullptr || !f->conn) return;
    append(dest, " conn=");
    append(dest, conn_id(*f->conn));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<ConnSuffix>();
  }
};

std::string utc_millis(spdlog::log_clock::time_point t) {
  std::time_t secs = spdlog::log_clock::to_time_t(t);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);  // no time zone file: safe after the seccomp filter is in place
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", tm, ms % 1000);
}

class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    // Ordered: a person reads these too, and ts, level, role, msg first reads best.
    nlohmann::ordered_json j;
    j["ts"] = utc_millis(msg.time);
    auto level = spdlog::level::to_string_view(msg.level);
    j["level"] = std::string(level.data(), level.size());
    j["role"] = std::string(msg.logger_name.data(), msg.logger_name.size());
    j["msg"] = std::string(msg.payload.data(), msg.payload.size());
    if (const log::Fields* f = log::current()) {
      if (!f->event.empty()) j["event"] = f->event;
      if (f->conn) {
        j["conn"] = conn_id(*f->conn);
        j["client"] = f->conn->ip.to_string() + ":" + std::to_string(f->conn->port);
      }
      if (!f->mode.empty()) j["mode"] = f->mode;
      if (!f->peer.empty()) j["peer"] = f->peer;
      if (f->request) j["request"] = *f->request;
      if (!f->reason.empty()) j["reason"] = f->reason;
    }
    // A message may quote what a client sent: never let a bad byte cost the line (dump() would
    // throw on invalid UTF-8 by default).
    append(dest, j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
    append(dest, "\n");
  }
  std::unique_ptr<formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

spdlog::level::level_enum to_spdlog(config::LogLevel l) {
  switch (l) {
    case config::LogLevel::Trace:
      return spdlog::level::trace;
    case config::LogLevel::Debug:
      return spdlog::level::debug;
    case config::LogLevel::Info:
      return spdlog::level::info;
    case config::LogLevel::Warn:
      return spdlog::level::warn;
    case config::LogLevel::Error:
      return spdlog::level::err;
  }
  return spdlog::level::info;
}

// Fetched once: an implicit fetch per digest (EVP_sha256()) cost as much as the digest itself.
const EVP_MD* sha256() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

}  // namespace

std::string conn_id(const ConnKey& key) {
  std::string text = key.to_string();
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned int len = 0;
  if (sha256() == nullptr ||
      EVP_Digest(text.data(), text.size(), md.data(), &len, sha256(), nullptr) != 1)
    std::abort();  // SHA-256 is always there: OpenSSL itself is broken
  std::string id;
  id.reserve(12);
  constexpr const char* kHex = "0123456789abcdef";
  for (size_t i = 0; i < 6; ++i) {
    id.push_back(kHex[md[i] >> 4]);
    id.push_back(kHex[md[i] & 0xf]);
  }
  return id;
}

std::unique_ptr<spdlog::formatter> text_formatter() {
  auto f = std::make_unique<spdlog::pattern_formatter>();
  f->add_flag<ConnSuffix>('*').set_pattern(std::string(kTextPattern) + "%*");
  return f;
}

std::unique_ptr<spdlog::formatter> json_formatter() {
  return std::make_unique<JsonFormatter>();
}

void setup_logging(const config::Config& cfg) {
  auto logger = spdlog::stderr_color_mt(us::to_string(cfg.node.role));
  spdlog::set_default_logger(logger);
  spdlog::set_formatter(cfg.log.format == config::LogFormat::Json ? json_formatter()
                                                                  : text_formatter());
  spdlog::set_level(to_spdlog(cfg.log.level));
  spdlog::flush_on(spdlog::level::info);
  (void)sha256();  // now, as root and before the seccomp filter: OpenSSL may read its config
}

}  // namespace us::node
