#include "core/vocabulary.hpp"

namespace us {

const char* to_string(Role r) {
  return r == Role::Primary ? "primary" : "backup";
}

const char* to_string(Mode m) {
  switch (m) {
    case Mode::Starting:
      return "starting";
    case Mode::Duplex:
      return "duplex";
    case Mode::Simplex:
      return "simplex";
  }
  return "?";
}

std::string ConnKey::to_string() const {
  return ip.to_string() + ":" + std::to_string(port) + "/isn=" + std::to_string(isn);
}

}  // namespace us
