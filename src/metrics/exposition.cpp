#include "metrics/exposition.hpp"

#include <cassert>
#include <charconv>
#include <cmath>
#include <limits>

namespace us::metrics {

const char* to_string(Type t) {
  switch (t) {
    case Type::Counter:
      return "counter";
    case Type::Gauge:
      return "gauge";
    case Type::Histogram:
      return "histogram";
  }
  return "untyped";
}

namespace {
bool name_char(char c, bool first, bool colon) {
  bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
  return alpha || (!first && c >= '0' && c <= '9');
}
bool valid_name(std::string_view name, bool colon) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, colon)) return false;
  return true;
}
}  // namespace

bool Exposition::valid_metric_name(std::string_view name) {
  return valid_name(name, true);
}

// Names beginning with "__" are reserved for Prometheus itself.
bool Exposition::valid_label_name(std::string_view name) {
  return valid_name(name, false) && !name.starts_with("__");
}

std::string Exposition::escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string Exposition::escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

std::string Exposition::format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v);  // shortest round-trip form
  return std::string(buf, r.ptr);
}

void Exposition::family(std::string_view name, Type type, std::string_view help) {
  assert(valid_metric_name(name));
  assert(type != Type::Counter || name.ends_with("_total"));
  [[maybe_unused]] bool fresh = families_.emplace(name).second;
  assert(fresh);
  name_ = name;
  type_ = type;
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  out_ += escape_help(help);
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += to_string(type);
  out_ += '\n';
}

void Exposition::line(std::string_view suffix, Labels labels, std::string_view extra_name,
                      std::string_view extra_value, std::string_view value) {
  out_ += name_;
  out_ += suffix;
  if (labels.size() > 0 || !extra_name.empty()) {
    out_ += '{';
    bool first = true;
    auto put = [&](std::string_view k, std::string_view v) {
      assert(valid_label_name(k));
      if (!first) out_ += ',';
      first = false;
      out_ += k;
      out_ += "=\"";
      out_ += escape_label_value(v);
      out_ += '"';
    };
    for (const auto& [k, v] : labels) put(k, v);
    if (!extra_name.empty()) put(extra_name, extra_value);
    out_ += '}';
  }
  out_ += ' ';
  out_ += value;
  out_ += '\n';
}

void Exposition::sample(double value, Labels labels) {
  assert(!name_.empty() && type_ != Type::Histogram);
  line("", labels, {}, {}, format_value(value));
}

void Exposition::sample(uint64_t value, Labels labels) {
  assert(!name_.empty() && type_ != Type::Histogram);
  line("", labels, {}, {}, std::to_string(value));
}

void Exposition::histogram(const HistogramData& h, Labels labels) {
  assert(type_ == Type::Histogram);
  assert(h.counts.size() == h.bounds.size() + 1);
  for ([[maybe_unused]] const auto& [k, v] : labels) assert(k != "le");
  uint64_t cumulative = 0;
  for (size_t i = 0; i < h.bounds.size(); ++i) {
    assert(i == 0 || h.bounds[i] > h.bounds[i - 1]);
    cumulative += h.counts[i];
    line("_bucket", labels, "le", format_value(h.bounds[i]), std::to_string(cumulative));
  }
  cumulative += h.counts.back();
  line("_bucket", labels, "le", "+Inf", std::to_string(cumulative));
  line("_sum", labels, {}, {}, format_value(h.sum));
  line("_count", labels, {}, {}, std::to_string(cumulative));
}

void Exposition::counter(std::string_view name, std::string_view help, uint64_t value) {
  family(name, Type::Counter, help);
  sample(value);
}

void Exposition::gauge(std::string_view name, std::string_view help, double value) {
  family(name, Type::Gauge, help);
  sample(value);
}

}  // namespace us::metrics
