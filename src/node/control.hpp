// The control socket: a Unix stream socket where `understudy status/fault/crash` ask the running
// node one JSON line and read one JSON line back. The server side answers inside the event loop
// without ever blocking it (a stuck admin tool must not delay heartbeats); the client side is what
// the CLI calls.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "common/result.hpp"
#include "sys/event_loop.hpp"
#include "sys/fd.hpp"

namespace us::node {

class ControlServer {
 public:
  // Answers `request` (a parsed line; discarded JSON if it did not parse). reply_now sends a reply
  // at once, for a command that will not return (crash); the return value is the reply otherwise.
  using ReplyNow = std::function<void(const nlohmann::json&)>;
  using Handler = std::function<nlohmann::json(const nlohmann::json& request, const ReplyNow&)>;

  ControlServer(sys::EventLoop& loop, Handler handler)
      : loop_(loop), handler_(std::move(handler)) {}
  // Binds `path` (mode 0600, parent directories created, a stale socket replaced) and listens.
  // Fails with "node.control_socket: bind <path>: <errno text>".
  Result<Ok, std::string> open(const std::filesystem::path& path);

 private:
  void on_accept();

  sys::EventLoop& loop_;
  Handler handler_;
  sys::Fd listener_;
};

// The commands: `status` (the node's status JSON; with "reset_timing": true, the timing
// histograms are zeroed after it is taken), `fault` (arm "point[:nth]" in the fault injector, empty
// disarms) and `crash` (answer, then die at once). Anything else: {"ok": false, "error": ...}.
nlohmann::json answer_command(const nlohmann::json& request,
                              const ControlServer::ReplyNow& reply_now,
                              const std::function<nlohmann::json()>& status,
                              const std::function<void()>& reset_timing);

// Asks a running node over its control socket. Returns the reply, or an error line.
Result<nlohmann::json, std::string> control_request(const std::string& socket_path,
                                                    const nlohmann::json& request);

}  // namespace us::node
