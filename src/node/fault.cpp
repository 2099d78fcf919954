#include "node/fault.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>

#include "sys/netdev.hpp"

namespace us::fault {
namespace {
std::string g_point;
uint64_t g_nth = 0;
uint64_t g_hits = 0;
std::string g_interface;
std::function<void()> g_before_crash;
}  // namespace

void before_crash(std::function<void()> fn) {
  g_before_crash = std::move(fn);
}

void arm(std::string point, uint64_t nth) {
  g_point = std::move(point);
  g_nth = nth == 0 ? 1 : nth;
  g_hits = 0;
  if (!g_point.empty()) spdlog::warn("fault: armed {} (hit {})", g_point, g_nth);
}

bool arm_from_spec(std::string_view spec) {
  auto colon = spec.find(':');
  uint64_t nth = 1;
  if (colon != std::string_view::npos) {
    auto n = spec.substr(colon + 1);
    auto [p, ec] = std::from_chars(n.data(), n.data() + n.size(), nth);
    if (ec != std::errc{} || p != n.data() + n.size() || nth == 0) return false;
    spec = spec.substr(0, colon);
  }
  if (spec.empty()) return false;
  arm(std::string(spec), nth);
  return true;
}

Result<Ok, std::string> arm_from_environment() {
  if (const char* spec = std::getenv("UNDERSTUDY_FAULT"); spec && *spec) {
    if (!arm_from_spec(spec))
      return Err{std::string("UNDERSTUDY_FAULT: expected point[:nth], got ") + spec};
  }
  return Ok{};
}

void set_interface(std::string ifname) {
  g_interface = std::move(ifname);
}

std::string armed() {
  return g_point.empty() ? "" : g_point + ":" + std::to_string(g_nth);
}

void hit(std::string_view point) {
  if (g_point.empty() || point != g_point) return;
  if (++g_hits < g_nth) return;
  crash_now(point);
}

void crash_now(std::string_view why) {
  spdlog::critical("fault: {} reached: taking {} down and dying", why, g_interface);
  spdlog::default_logger()->flush();
  if (g_before_crash) g_before_crash();
  if (!g_interface.empty()) sys::set_link_down(g_interface);
  ::kill(::getpid(), SIGKILL);
  for (;;) ::pause();
}

}  // namespace us::fault
