// The config file's keys turned into each layer's Settings (docs/CONFIG.md names the keys). The
// node fills in what is its own to give: the mode source, the ISN function and the fault hook.
#pragma once
#include "config/config.hpp"
#include "message/message_layer.hpp"
#include "packet/packet_layer.hpp"

namespace us::node {

packet::Settings packet_settings(const config::Config& cfg);
message::Settings message_settings(const config::Config& cfg);

}  // namespace us::node
