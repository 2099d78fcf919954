// Error replies the message layer sends when it refuses a request itself (see framer.hpp).
#pragma once

#include <string>

namespace us::http {

// A deterministic reply: no Date or Server header, so primary and backup produce identical bytes
// (DESIGN.md: the backup must be able to emit the same reply). Always Connection: close, because
// after a framing error the rest of the stream cannot be trusted. Unknown statuses get the
// generic phrase "Error".
std::string error_reply(int status);

}  // namespace us::http
