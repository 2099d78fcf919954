// What the node takes from its host before it starts: more file descriptors, SIGTERM and SIGINT,
// and the LAN tap, raw sender and TUN device, once the host passes the checks (whole packets from
// the LAN interface, room for the relay overhead, a kernel that does not forward the advertised
// address's traffic itself; docs/ARCHITECTURE.md). Each failure is one line naming what to fix.
#pragma once
#include <functional>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"
#include "sys/event_loop.hpp"
#include "sys/fd.hpp"
#include "sys/netdev.hpp"

namespace us::node {

struct Devices {
  sys::LinkInfo link;  // the LAN interface's index, MAC and MTU
  sys::LanTap tap;
  sys::RawSender raw;
  sys::Tun tun;
};

// Two descriptors per client connection on the serving node: the soft limit goes up to the hard.
void raise_descriptor_limit();

// SIGTERM and SIGINT are blocked and read from the returned signalfd inside the loop: each is
// logged ("node: signal SIGTERM: stopping") and calls `stop` (the node hands over or exits 0).
sys::Fd on_stop_signals(sys::EventLoop& loop, std::function<void()> stop);

Result<Devices, std::string> open_devices(const config::Config& cfg);

}  // namespace us::node
