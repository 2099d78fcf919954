// libFuzzer target: the configuration parser (src/config), from text (parse_config). Read
// fuzz/README.md first. The key file it names is read: a temporary directory holds a valid
// peer.key (mode 0600), so inputs that reach validation can pass it.
//
// Checked: nothing throws out of parse_config, nothing crashes, and every error says something.
// A config that parses gives shared settings that the replication channel's Hello can carry
// (printable, no spaces, at most 255 bytes, unique keys), that round-trip through
// encode/decode_hello, and that match themselves (settings_mismatch == nullopt).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "config/config.hpp"
#include "peer/messages.hpp"

#include "check.hpp"

namespace {

namespace fs = std::filesystem;
using namespace us;

fs::path make_dir() {
  fs::path dir =
      fs::temp_directory_path() / ("understudy_config_fuzz_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "peer.key")
        << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  }
  fs::permissions(dir / "peer.key", fs::perms::owner_read | fs::perms::owner_write);
  std::atexit([] {
    fs::remove_all(fs::temp_directory_path() /
                   ("understudy_config_fuzz_" + std::to_string(::getpid())));
  });
  return dir;
}

bool hello_text(const std::string& s) {
  if (s.empty() || s.size() > 255) return false;
  for (char c : s)
    if (c <= ' ' || c > '~') return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const fs::path dir = make_dir();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = config::parse_config(text, dir);
  if (!r) {
    // The key may be empty: TOML allows an empty quoted key ("" = 1), refused as an unknown one.
    FUZZ_CHECK(!r.error().message.empty());
    return 0;
  }
  FUZZ_CHECK(r->peer.key.size() == 32);
  const auto shared = config::shared_settings(*r);
  FUZZ_CHECK(shared.size() <= 255);
  for (size_t i = 0; i < shared.size(); ++i) {
    FUZZ_CHECK(hello_text(shared[i].first) && hello_text(shared[i].second));
    for (size_t j = 0; j < i; ++j) FUZZ_CHECK(shared[j].first != shared[i].first);
  }
  FUZZ_CHECK(!config::settings_mismatch(shared, shared));
  peer::Hello hello{Role::Primary, Mode::Duplex, 1, {}, shared};
  std::vector<uint8_t> wire;
  peer::encode(wire, hello);
  auto back = peer::decode_hello(wire);
  FUZZ_CHECK(back && back->settings == shared);
  return 0;
}
