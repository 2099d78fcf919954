// What the node takes from its host before it starts: more file descriptors, SIGTERM and SIGINT,
// and the LAN tap, raw sender and TUN device, once the host passes the checks (whole packets from
// the LAN interface, room for the relay overhead, a kernel that does not forward the advertised
// address's traffic itself; docs/ARCHITECTURE.md). Each failure is one line naming what to fix.
// And what it gives back once all is open: root, every capability but one, most system calls.
#pragma once
#include <functional>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"
#include "sys/event_loop.hpp"
#include "sys/fd.hpp"
#include "sys/netdev.hpp"
#include "sys/next_hops.hpp"
#include "sys/privileges.hpp"

namespace us::node {

struct Devices {
  sys::LinkInfo link;  // the LAN interface's index, MAC and MTU
  sys::LanTap tap;
  sys::RawSender raw;
  sys::Tun tun;
  // Super-segments to the client whole (absent: they are cut and sent by the raw socket).
  std::optional<sys::LanSender> lan_sender;
  std::optional<sys::NextHops> next_hops;
};

// Two descriptors per client connection on the serving node: the soft limit goes up to the hard.
void raise_descriptor_limit();

// SIGTERM and SIGINT are blocked and read from the returned signalfd inside the loop: each is
// logged ("node: signal SIGTERM: stopping") and calls `stop` (the node hands over or exits 0).
sys::Fd on_stop_signals(sys::EventLoop& loop, std::function<void()> stop);

Result<Devices, std::string> open_devices(const config::Config& cfg);

// The account of `node.user`, looked up before anything is opened ("root" included). Fails with
// "node.user: no user \"x\" on this host" (the CLI exits 2, as for any config error).
Result<sys::Account, std::string> run_as(const config::Config& cfg);

// Least privilege (issue 10, item 6; docs/ARCHITECTURE.md, "Least privilege"). Called once every
// descriptor is open (LAN tap, raw sender, TUN, peer UDP and TCP, server listener, control
// socket) and before the loop runs: becomes `account` keeping only CAP_NET_ADMIN (the fault
// points take the LAN link down, SIOCSIFFLAGS, checked at each call), sets no_new_privs and loads
// the system-call allow-list (sys/seccomp.hpp). Logs one info line saying so. As root (node.user
// = "root") it changes nothing and logs a warning. A failure is one line; the node must not serve.
Result<Ok, std::string> give_up_privileges(const sys::Account& account);

}  // namespace us::node
