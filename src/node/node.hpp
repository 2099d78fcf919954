// One Understudy node: the adapters (LAN tap, raw sender, TUN, peer sockets, control socket) around
// the I/O-free packet layer, the message layer and the mode machine. Read DESIGN.md section 1, then
// packet/packet_layer.hpp and message/message_layer.hpp. The control socket's client is in
// node/control.hpp.
#pragma once
#include <memory>
#include <string>

#include "common/result.hpp"
#include "config/config.hpp"

namespace us::node {

class Node {
 public:
  explicit Node(config::Config cfg);
  ~Node();
  // Opens every socket and device; a clear one-line error if something is missing.
  Result<Ok, std::string> init();
  // Runs until SIGTERM/SIGINT (exit 0) or until the node must stop (refused start, fail-stop).
  int run();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace us::node
