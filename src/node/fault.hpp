// Fault points: named places in the daemon where a test can make this node die the way a host dies
// (interface down first, so nothing more leaves it, then SIGKILL). Armed from the environment
// (UNDERSTUDY_FAULT=point[:nth]) or by the control command `fault`. The names and the Table 2 rows
// they reach are listed in docs/FAULTS.md.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace us::fault {

// Arms `point`: the nth hit (1 = first) kills the node. An empty point disarms.
void arm(std::string point, uint64_t nth);
// Parses "point" or "point:nth"; false if malformed.
bool arm_from_spec(std::string_view spec);
// Arms from UNDERSTUDY_FAULT if it is set and not empty. Fails with a line naming the variable.
Result<Ok, std::string> arm_from_environment();
void set_interface(std::string ifname);
// Runs first when the node dies at a fault point: it sends what the packet path queued in the
// batch so far, as a host that dies has already put on the wire what it sent before.
void before_crash(std::function<void()> fn);
std::string armed();
void hit(std::string_view point);
// Dies now, as at a fault point (the control command `crash`).
[[noreturn]] void crash_now(std::string_view why);

}  // namespace us::fault
