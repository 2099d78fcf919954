#include "message/regeneration.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <utility>

namespace us::message {
namespace {

MdPtr new_sha256() {
  MdPtr p(EVP_MD_CTX_new());
  if (!p || EVP_DigestInit_ex(p.get(), EVP_sha256(), nullptr) != 1) std::abort();
  return p;
}

std::array<uint8_t, 32> digest(EVP_MD_CTX* ctx) {
  std::array<uint8_t, 32> out{};
  MdPtr copy(EVP_MD_CTX_new());
  EVP_MD_CTX_copy_ex(copy.get(), ctx);
  unsigned len = 0;
  EVP_DigestFinal_ex(copy.get(), out.data(), &len);
  return out;
}

// Where the value of the Date header sits in a reply head, if anywhere: the one header nginx
// changes between two identical replies. An IMF-fixdate is always 29 bytes (RFC 9110 5.6.7), so
// the range is known even when the head we hold ends inside it.
std::pair<size_t, size_t> date_value_range(std::string_view head) {
  auto end = head.find("\r\n\r\n");
  auto pos = head.find("\r\nDate: ");
  if (pos == std::string_view::npos || (end != std::string_view::npos && pos > end)) return {0, 0};
  return {pos + 8, pos + 8 + 29};
}

std::string printable(std::string_view bytes) {
  std::string out;
  for (char ch : bytes) {
    if (ch >= 0x20 && ch < 0x7f) {
      out.push_back(ch);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(ch));
      out += buf;
    }
  }
  return out;
}
}  // namespace

void PartialReply::add(std::span<const uint8_t> bytes) {
  size_t to_head = std::min(bytes.size(), kVerifyHead - std::min(kVerifyHead, head.size()));
  head.append(reinterpret_cast<const char*>(bytes.data()), to_head);
  if (to_head < bytes.size()) {
    if (!tail) tail = new_sha256();
    EVP_DigestUpdate(tail.get(), bytes.data() + to_head, bytes.size() - to_head);
  }
  length += bytes.size();
}

bool Regeneration::consume(std::span<const uint8_t> bytes) {
  size_t from = seen.head.size();
  seen.add(bytes);
  remaining -= std::min<uint64_t>(remaining, bytes.size());
  size_t n = std::min(seen.head.size(), expected.head.size());
  auto [db, de] = date_value_range(expected.head);
  for (size_t i = from; i < n; ++i) {
    bool masked = i >= db && i < de;
    if (!masked && seen.head[i] != expected.head[i]) {
      size_t at = i < 24 ? 0 : i - 24;
      mismatch = "at byte " + std::to_string(i) + ": held \"" +
                 printable(std::string_view(expected.head).substr(at, 64)) + "\" vs new \"" +
                 printable(std::string_view(seen.head).substr(at, 64)) + "\"";
      return false;
    }
  }
  if (remaining == 0 && expected.tail) {
    if (!seen.tail || digest(seen.tail.get()) != digest(expected.tail.get())) {
      mismatch = "in the bytes after the first 64 KiB (SHA-256 differs)";
      return false;
    }
  }
  return true;
}

}  // namespace us::message
