#include "toxics/attributes.h"

#include <cctype>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>


namespace faultline::toxics {

namespace attr {

namespace {
[[noreturn]] void out_of_range(std::string_view name, auto min, auto max) {
  throw ToxicError(fmt::format("attribute '{}' is out of range ({}..{})", name, min, max));
}

std::string trim(std::string_view s) {
  size_t a = 0, b = s.size();
  while (a < b && std::isspace(static_cast<unsigned char>(s[a]))) ++a;
  while (b > a && std::isspace(static_cast<unsigned char>(s[b - 1]))) --b;
  return std::string(s.substr(a, b - a));
}
} // namespace

int64_t read_int(const nlohmann::json& v, std::string_view name, Range<int64_t> r) {
  int64_t out;
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) out_of_range(name, r.min, r.max);
    out = v.get<int64_t>();
  } else if (v.is_number_integer()) {
    out = v.get<int64_t>();
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    if (d != std::trunc(d))
      throw ToxicError(fmt::format("attribute '{}' must be a whole number", name));
    // 2^63 is exact in a double; anything from there on does not fit.
    if (d >= 9223372036854775808.0 || d < -9223372036854775808.0) out_of_range(name, r.min, r.max);
    out = static_cast<int64_t>(d);
  } else {
    throw ToxicError(fmt::format("attribute '{}' must be a number", name));
  }
  if (out < r.min || out > r.max) out_of_range(name, r.min, r.max);
  return out;
}

double read_number(const nlohmann::json& v, std::string_view name, Range<double> r) {
  if (!v.is_number()) throw ToxicError(fmt::format("attribute '{}' must be a number", name));
  double d = v.get<double>();
  if (!(d >= r.min && d <= r.max)) out_of_range(name, r.min, r.max);
  return d;
}

std::string read_choice(const nlohmann::json& v, std::string_view name,
                        const std::vector<std::string_view>& choices) {
  std::string list;
  for (std::string_view c : choices) list += fmt::format("{}{}", list.empty() ? "" : ", ", c);
  if (!v.is_string())
    throw ToxicError(fmt::format("attribute '{}' must be one of: {}", name, list));
  const std::string& s = v.get_ref<const std::string&>();
  for (std::string_view c : choices)
    if (s == c) return s;
  throw ToxicError(fmt::format("attribute '{}' must be one of: {} (got '{}')", name, list, s));
}

std::string read_string(const nlohmann::json& v, std::string_view name, std::string_view form) {
  if (!v.is_string()) {
    if (form.empty()) throw ToxicError(fmt::format("attribute '{}' must be a string", name));
    throw ToxicError(fmt::format("attribute '{}' must be a string ({})", name, form));
  }
  return v.get<std::string>();
}

std::vector<std::string> read_list(const nlohmann::json& v, std::string_view name) {
  std::vector<std::string> out;
  if (v.is_string()) {
    const std::string& all = v.get_ref<const std::string&>();
    size_t start = 0;
    while (start <= all.size()) {
      size_t comma = all.find(',', start);
      if (comma == std::string::npos) comma = all.size();
      std::string one = trim(std::string_view(all).substr(start, comma - start));
      if (!one.empty()) out.push_back(std::move(one));
      start = comma + 1;
    }
  } else if (v.is_array()) {
    for (const auto& e : v) {
      if (!e.is_string())
        throw ToxicError(fmt::format("attribute '{}' must be an array of strings", name));
      std::string one = trim(e.get_ref<const std::string&>());
      if (!one.empty()) out.push_back(std::move(one));
    }
  } else {
    throw ToxicError(fmt::format(
        "attribute '{}' must be an array of strings or a comma-separated string", name));
  }
  return out;
}

void missing(std::string_view type, std::string_view name) {
  throw ToxicError(fmt::format("{} needs attribute '{}'", type, name));
}

} // namespace attr

} // namespace faultline::toxics
