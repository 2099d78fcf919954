#include "http/head_edit.hpp"

#include <algorithm>
#include <cassert>

namespace us::http {

bool is_field_name(std::string_view name) {
  static constexpr std::string_view kSymbols = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (char c : name) {
    bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              kSymbols.find(c) != std::string_view::npos;
    if (!ok) return false;
  }
  return true;
}

std::string lower_case(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

void append_edited_head(const RequestInfo& ri, std::string_view head, std::string_view fields,
                        std::string& out) {
  assert(ri.head_end > ri.begin && head.size() == ri.head_end - ri.begin);
  uint64_t at = ri.begin;  // stream offset of the next byte of `head` to copy
  auto copy_to = [&](uint64_t stop) {
    if (stop > at) out.append(head.substr(static_cast<size_t>(at - ri.begin), stop - at));
  };
  for (const auto& r : ri.strip) {  // in stream order, all before fields_end
    copy_to(r.begin);
    at = std::max(at, r.end);
  }
  copy_to(ri.fields_end);
  out.append(fields);
  at = std::max(at, ri.fields_end);
  copy_to(ri.head_end);
}

}  // namespace us::http
