// Editing a request head on its way to the server: fields a client must not set are removed, and
// the proxy's own are added before the blank line. Positions come from the framer's callbacks
// (RequestInfo::strip, fields_end), never from searching the bytes, so an edit is a function of
// the request stream alone: two nodes that frame the same bytes make the same edit.
#pragma once
#include <string>
#include <string_view>

#include "http/framer.hpp"

namespace us::http {

// A legal header field name: an RFC 7230 3.2.6 token (1*tchar).
bool is_field_name(std::string_view name);

// ASCII lower case, as the framer compares names.
std::string lower_case(std::string_view s);

// Appends the head of `ri` (its headers complete) to `out`: `head` is the stream's bytes
// [ri.begin, ri.head_end); the lines in ri.strip are left out and `fields` (whole lines, each
// "Name: value\r\n") go in at ri.fields_end, after every field the client sent.
void append_edited_head(const RequestInfo& ri, std::string_view head, std::string_view fields,
                        std::string& out);

}  // namespace us::http
