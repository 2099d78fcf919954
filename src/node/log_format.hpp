// The daemon's log lines (docs/LOGS.md): `log.format = "text"` (the default) is the line format
// the node always had, with ` conn=ID` appended to a line about one client connection;
// `log.format = "json"` is one JSON object a line with ts, level, role, msg and the line's
// us::log::Fields (core/log.hpp). Read core/log.hpp first.
#pragma once

#include <spdlog/formatter.h>

#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/vocabulary.hpp"

namespace us::node {

// A client connection's name in the logs, the same on both nodes (it is made of ConnKey, I4):
// the first 12 hex digits of SHA-256 over ConnKey::to_string(), e.g. of
// "198.18.0.2:40000/isn=12345". Short enough to type, long enough not to collide in one log.
std::string conn_id(const ConnKey& key);

// "%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ [%n] %v", then " conn=ID" when the line has a connection.
std::unique_ptr<spdlog::formatter> text_formatter();

// {"ts":"2026-11-30T06:49:15.123Z","level":"info","role":"backup","msg":"...","event":...}
// ts is UTC with milliseconds (RFC 3339); level is spdlog's word, as in the text format; the
// other keys are present when the line has them. Bytes that are not UTF-8 become U+FFFD.
std::unique_ptr<spdlog::formatter> json_formatter();

// The default logger of `run`: stderr, named after the role, at log.level in log.format.
void setup_logging(const config::Config& cfg);

}  // namespace us::node
