// Inputs the fuzz targets (fuzz/, fuzz/README.md) found to break a property, reduced to a unit
// test each, beside the fix. The raw inputs are in fuzz/corpus/<target>/regress-*.
#include <gtest/gtest.h>

#include <string>
#include <string_view>
#include <vector>

#include "http/framer.hpp"

namespace us::http {
namespace {

std::span<const uint8_t> bytes_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// Feeds `stream` in pieces of `piece` bytes (0: whole) and returns the requests it completes.
std::vector<RequestInfo> frame(std::string_view stream, size_t piece) {
  RequestFramer f;
  std::vector<RequestInfo> done;
  if (piece == 0) piece = stream.size();
  for (size_t pos = 0; pos < stream.size(); pos += piece) {
    auto r = f.feed(bytes_of(stream.substr(pos, piece)), done);
    EXPECT_TRUE(r.ok()) << r.error().reason;
  }
  return done;
}

// fuzz_http: an Expect value longer than the framer keeps, continued by an obs-fold line that
// says "100-continue", was 100-continue when it came in one segment (the long first line was
// dropped whole, the fold line kept) and not when split (a prefix of the first line was kept).
// A value too long to keep is never 100-continue, however it is segmented.
TEST(RequestFramer, OverlongExpectValueIsNotContinueWhateverTheSplit) {
  const std::string stream = "POST / HTTP/1.1\r\nExpect: " + std::string(70, 'x') +
                             "\r\n\t100-continue\r\nContent-Length: 1\r\n\r\nz";
  for (size_t piece : {size_t{0}, size_t{1}, size_t{7}, size_t{30}}) {
    auto done = frame(stream, piece);
    ASSERT_EQ(done.size(), 1u) << "piece " << piece;
    EXPECT_FALSE(done[0].expect_continue) << "piece " << piece;
    EXPECT_EQ(done[0].end, stream.size()) << "piece " << piece;
  }
}

}  // namespace
}  // namespace us::http
