// Log lines with structured fields (docs/LOGS.md). Every layer logs through spdlog; a line about
// one event that an operator may want to find again (a connection's life, a mode change, a
// refusal) goes through us::log with its fields, which the node's formatter (node/log_format)
// writes as `conn=ID` after the text, or as JSON keys. Plain spdlog calls stay valid lines in
// either format, with no fields.
//
// The fields reach the formatter through a thread-local pointer for the length of one call: the
// daemon's logger is synchronous (an async logger would format after the pointer is gone).
#pragma once

#include <spdlog/spdlog.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <utility>

#include "core/vocabulary.hpp"

namespace us::log {

struct Fields {
  std::string_view event = {};           // a short stable name: "conn_open", "mode_change"
  std::optional<ConnKey> conn = {};      // the client connection: its id and address (client)
  std::string_view mode = {};            // the node's mode the event is about (the new one)
  std::string_view peer = {};            // the other node's role, on lines about it
  std::optional<uint64_t> request = {};  // the request's index on its connection, from 0
  std::string_view reason = {};          // why, in a few words (a refusal, a reset)
};

namespace detail {
inline thread_local const Fields* t_fields = nullptr;
}

// The fields of the line being formatted, or nullptr (a plain spdlog call).
inline const Fields* current() {
  return detail::t_fields;
}

// Sets the fields for the length of one call.
class ScopedFields {
 public:
  explicit ScopedFields(const Fields& f) : saved_(detail::t_fields) { detail::t_fields = &f; }
  ~ScopedFields() { detail::t_fields = saved_; }
  ScopedFields(const ScopedFields&) = delete;
  ScopedFields& operator=(const ScopedFields&) = delete;

 private:
  const Fields* saved_;
};

// For lines on the per-request path: their arguments (a key's text) are not made at info.
inline bool enabled(spdlog::level::level_enum level) {
  return spdlog::default_logger_raw()->should_log(level);
}

template <typename... Args>
void at(spdlog::level::level_enum level, const Fields& f, spdlog::format_string_t<Args...> fmt,
        Args&&... args) {
  auto* logger = spdlog::default_logger_raw();
  if (!logger->should_log(level)) return;  // per-request lines cost one compare at info
  ScopedFields scope(f);
  logger->log(level, fmt, std::forward<Args>(args)...);
}

template <typename... Args>
void debug(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  at(spdlog::level::debug, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void info(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  at(spdlog::level::info, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void warn(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  at(spdlog::level::warn, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void error(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  at(spdlog::level::err, f, fmt, std::forward<Args>(args)...);
}
template <typename... Args>
void critical(const Fields& f, spdlog::format_string_t<Args...> fmt, Args&&... args) {
  at(spdlog::level::critical, f, fmt, std::forward<Args>(args)...);
}

}  // namespace us::log
