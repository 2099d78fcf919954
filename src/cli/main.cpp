// understudy: command-line entry point. `run` a node, `check` a config, ask a running node its
// `status`, make a `keygen`; `fault` and `crash` drive the fault points for tests (docs/FAULTS.md).
// `run` opens everything as root, then gives root up (node/host.hpp, give_up_privileges).
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <CLI/CLI.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "config/config.hpp"
#include "crypto/key.hpp"
#include "node/control.hpp"
#include "node/hooks.hpp"
#include "node/host.hpp"
#include "node/log_format.hpp"
#include "node/node.hpp"

namespace {

using us::config::Config;

// Exit codes: 0 ok, 1 runtime failure, 2 bad config or usage, 3 refused to start, 4 fail-stop.
constexpr int kExitConfig = 2;

std::optional<Config> load_or_report(const std::string& path) {
  auto cfg = us::config::load_config(path);
  if (!cfg) {
    std::cerr << cfg.error().line() << "\n";
    return std::nullopt;
  }
  return std::move(*cfg);
}

int cmd_run(const std::string& path) {
  auto cfg = load_or_report(path);
  if (!cfg) return kExitConfig;
  auto account = us::node::run_as(*cfg);  // before anything is opened: a config error
  if (!account) {
    std::cerr << account.error() << "\n";
    return kExitConfig;
  }
  us::node::setup_logging(*cfg);
  us::node::Node node(std::move(*cfg));
  if (auto r = node.init(); !r) {
    spdlog::error("cannot start: {}", r.error());
    return 1;
  }
  // Everything is open: the rest of the node's life parses the internet as node.user.
  if (auto r = us::node::give_up_privileges(*account); !r) {
    spdlog::error("cannot start: {}", r.error());
    return 1;
  }
  return node.run();
}

int cmd_status(const std::string& path, bool json, bool reset_timing) {
  auto cfg = load_or_report(path);
  if (!cfg) return kExitConfig;
  auto reply = us::node::control_request(cfg->node.control_socket.string(),
                                         {{"cmd", "status"}, {"reset_timing", reset_timing}});
  if (!reply) {
    std::cerr << "status: " << reply.error() << " (is the node running?)\n";
    return 1;
  }
  const auto& s = *reply;
  if (json) {
    std::cout << s.dump() << "\n";
    return 0;
  }
  std::cout << "role:        " << s.value("role", "?") << "\n"
            << "mode:        " << s.value("mode", "?") << "\n"
            << "front:       " << (s.value("front", false) ? "yes" : "no") << " (advertised "
            << s.value("advertised", "?") << ")\n"
            << "peer:        " << s.value("peer", "?") << "\n"
            << "connections: " << s.value("connections", 0);
  if (int unprotected = s.value("connections_unprotected", 0); unprotected > 0)
    std::cout << " (" << unprotected << " unprotected: open before the peer rejoined)";
  std::cout << "\n"
            << "failovers:   " << s.value("failovers", 0) << "\n";
  return 0;
}

int cmd_control(const std::string& path, const nlohmann::json& request) {
  auto cfg = load_or_report(path);
  if (!cfg) return kExitConfig;
  auto reply = us::node::control_request(cfg->node.control_socket.string(), request);
  if (!reply) {
    std::cerr << reply.error() << "\n";
    return 1;
  }
  std::cout << reply->dump() << "\n";
  return reply->value("ok", false) ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "understudy: client-transparent failover of in-flight HTTP requests between two nodes"};
  app.require_subcommand(1);
  std::string config;

  auto* run =
      app.add_subcommand("run", "Run a node in the foreground (logs to stderr; SIGTERM stops it)");
  run->add_option("--config", config, "TOML config file")->required()->check(CLI::ExistingFile);

  auto* check = app.add_subcommand(
      "check", "Validate a config: exit 0, or exit 2 and one line naming the key");
  check->add_option("--config", config, "TOML config file")->required();

  bool json = false;
  auto* status = app.add_subcommand("status", "Ask the running node of this config how it is");
  status->add_option("--config", config, "TOML config file")->required();
  status->add_flag("--json", json,
                   "One JSON object (role, mode, front, peer, connections, failovers, counters)");
  bool reset_timing = false;
  status->add_flag("--reset-timing", reset_timing,
                   "After answering, zero the timing histograms (benchmarks)");

  std::string key_out;
  auto* keygen = app.add_subcommand(
      "keygen", "Print a new pre-shared peer key (64 hex characters), or write it to a new file");
  keygen->add_option("--out", key_out,
                     "Write the key to this new file, readable by its owner only (mode 0600)");

  std::string point;
  auto* fault =
      app.add_subcommand("fault", "Arm a fault point in the running node: it dies there (tests)");
  fault->add_option("--config", config, "TOML config file")->required();
  fault->add_option(
      "point", point,
      "point[:nth], e.g. primary.reply_read or primary.reply_written:40; empty disarms");

  auto* crash =
      app.add_subcommand("crash", "Make the running node die now like a failed host (tests)");
  crash->add_option("--config", config, "TOML config file")->required();

  // Hidden: the hook runner the daemon spawns of itself when hooks.* are set (node/hooks.hpp).
  int runner_fd = 3;
  std::string on_front, on_alone, runner_role, runner_advertised, runner_peer;
  std::string runner_log_format = "text";
  uint64_t runner_timeout_ms = 30000;
  auto* hook_runner = app.add_subcommand("hook-runner", "");
  hook_runner->group("");
  hook_runner->add_option("--fd", runner_fd)->required();
  hook_runner->add_option("--on-front", on_front);
  hook_runner->add_option("--on-alone", on_alone);
  hook_runner->add_option("--timeout-ms", runner_timeout_ms)->required();
  hook_runner->add_option("--role", runner_role)->required();
  hook_runner->add_option("--advertised", runner_advertised)->required();
  hook_runner->add_option("--peer", runner_peer)->required();
  hook_runner->add_option("--log-format", runner_log_format);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : kExitConfig;
  }

  if (*run) return cmd_run(config);
  if (*hook_runner) {
    // Its lines go to the daemon's log (the same stderr), under the node's role, in its format.
    spdlog::set_default_logger(
        spdlog::stderr_color_mt(runner_role.empty() ? "hooks" : runner_role));
    spdlog::set_formatter(runner_log_format == "json" ? us::node::json_formatter()
                                                      : us::node::text_formatter());
    spdlog::flush_on(spdlog::level::info);
    auto s = us::node::hooks::runner_settings(runner_fd, on_front, on_alone, runner_timeout_ms,
                                              runner_role, runner_advertised, runner_peer);
    if (!s) {
      spdlog::error("hook-runner: {}", s.error());
      return kExitConfig;
    }
    return us::node::hooks::run_runner(*s);
  }
  if (*check) {
    auto cfg = us::config::load_config(config);
    if (!cfg) {
      std::cout << cfg.error().line() << "\n";
      return kExitConfig;
    }
    if (auto account = us::node::run_as(*cfg); !account) {
      std::cout << account.error() << "\n";
      return kExitConfig;
    }
    std::cout << "ok: " << config << " (" << us::to_string(cfg->node.role) << ", advertised "
              << cfg->service.advertised.to_string() << ")\n";
    return 0;
  }
  if (*status) return cmd_status(config, json, reset_timing);
  if (*keygen) {
    std::string line = us::crypto::generate_key_hex() + "\n";
    if (key_out.empty()) {
      std::cout << line;
      return 0;
    }
    // O_EXCL: never replace a key in use; 0600 from the start, not after a chmod.
    int fd = ::open(key_out.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || ::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
      std::cerr << "keygen: " << key_out << ": " << std::strerror(errno) << "\n";
      if (fd >= 0) ::close(fd);
      return 1;
    }
    ::close(fd);
    return 0;
  }
  if (*fault) return cmd_control(config, {{"cmd", "fault"}, {"point", point}});
  if (*crash) return cmd_control(config, {{"cmd", "crash"}});
  return kExitConfig;
}
