#include "toxics/attributes.h"

#include <cctype>
#include <cmath>
#include <cstdint>

#include <fmt/format.h>

#include "toxics/registry.h"

namespace faultline::toxics {

namespace attr {

namespace {
[[noreturn]] void out_of_range(std::string_view name, auto min, auto max) {
  throw ToxicError(fmt::format("attribute '{}' is out of range ({}..{})", name, min, max),
                   std::string(name));
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
      throw ToxicError(fmt::format("attribute '{}' must be a whole number", name),
                       std::string(name));
    // 2^63 is exact in a double; anything from there on does not fit.
    if (d >= 9223372036854775808.0 || d < -9223372036854775808.0) out_of_range(name, r.min, r.max);
    out = static_cast<int64_t>(d);
  } else {
    throw ToxicError(fmt::format("attribute '{}' must be a number", name), std::string(name));
  }
  if (out < r.min || out > r.max) out_of_range(name, r.min, r.max);
  return out;
}

double read_number(const nlohmann::json& v, std::string_view name, Range<double> r) {
  if (!v.is_number())
    throw ToxicError(fmt::format("attribute '{}' must be a number", name), std::string(name));
  double d = v.get<double>();
  if (!(d >= r.min && d <= r.max)) out_of_range(name, r.min, r.max);
  return d;
}

std::string read_choice(const nlohmann::json& v, std::string_view name,
                        const std::vector<std::string_view>& choices) {
  std::string list;
  for (std::string_view c : choices) list += fmt::format("{}{}", list.empty() ? "" : ", ", c);
  if (!v.is_string())
    throw ToxicError(fmt::format("attribute '{}' must be one of: {}", name, list),
                     std::string(name));
  const std::string& s = v.get_ref<const std::string&>();
  for (std::string_view c : choices)
    if (s == c) return s;
  throw ToxicError(fmt::format("attribute '{}' must be one of: {} (got '{}')", name, list, s),
                   std::string(name));
}

std::string read_string(const nlohmann::json& v, std::string_view name, std::string_view form) {
  if (!v.is_string()) {
    if (form.empty())
      throw ToxicError(fmt::format("attribute '{}' must be a string", name), std::string(name));
    throw ToxicError(fmt::format("attribute '{}' must be a string ({})", name, form),
                     std::string(name));
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
        throw ToxicError(fmt::format("attribute '{}' must be an array of strings", name),
                         std::string(name));
      std::string one = trim(e.get_ref<const std::string&>());
      if (!one.empty()) out.push_back(std::move(one));
    }
  } else {
    throw ToxicError(
        fmt::format("attribute '{}' must be an array of strings or a comma-separated string", name),
        std::string(name));
  }
  return out;
}

void missing(std::string_view type, std::string_view name) {
  throw ToxicError(fmt::format("{} needs attribute '{}'", type, name), std::string(name));
}

void unknown(std::string_view type, std::string_view name, const std::vector<AttrInfo>& known) {
  std::string list;
  for (const auto& a : known)
    list += fmt::format("{}{}", list.empty() ? "" : ", ", a.name);
  if (list.empty())
    throw ToxicError(fmt::format("unknown attribute '{}': {} takes no attributes", name, type),
                     std::string(name));
  throw ToxicError(fmt::format("unknown attribute '{}': {} takes {}", name, type, list),
                   std::string(name));
}

} // namespace attr

// ---- the docs' reference tables ----

namespace {

// A table cell: pipes would end it.
std::string cell(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '|') out += '\\';
    out += c;
  }
  return out;
}

std::string code(std::string_view s) { return fmt::format("`{}`", s); }

std::string value_text(const AttrInfo& a) {
  switch (a.kind) {
  case AttrKind::Int: {
    std::string range = a.int_max == INT64_MAX ? fmt::format("≥ {}", a.int_min)
                                               : fmt::format("{}..{}", a.int_min, a.int_max);
    return a.unit.empty() ? fmt::format("integer {}", range)
                          : fmt::format("integer {} {}", range, a.unit);
  }
  case AttrKind::Number: {
    std::string s = fmt::format("number {}..{}", a.num_min, a.num_max);
    return a.unit.empty() ? s : fmt::format("{} {}", s, a.unit);
  }
  case AttrKind::Choice: {
    std::string s;
    for (size_t i = 0; i < a.choices.size(); ++i) {
      if (i > 0) s += i + 1 == a.choices.size() ? " or " : ", ";
      s += code(a.choices[i]);
    }
    return s;
  }
  case AttrKind::String:
    return a.unit.empty() ? "string" : fmt::format("string ({})", a.unit);
  case AttrKind::List:
    return a.unit.empty() ? "strings: an array, or one comma-separated string"
                          : fmt::format("{}: an array, or one comma-separated string", a.unit);
  }
  return "";
}

std::string default_text(const AttrInfo& a) {
  if (a.required) return "required";
  if (!a.def_doc.empty()) return std::string(a.def_doc);
  if (a.def.is_string()) {
    const std::string& s = a.def.get_ref<const std::string&>();
    return s.empty() ? "none" : code(s);
  }
  if (a.def.is_number_float()) return fmt::format("{}", a.def.get<double>());
  if (a.def.is_null()) return "none";
  return a.def.dump();
}

std::string row(std::initializer_list<std::string_view> cells) {
  std::string out = "|";
  for (std::string_view c : cells) out += c.empty() ? " |" : " " + cell(c) + " |";
  return out + "\n";
}

bool has_filter(const TypeInfo& t) {
  for (const auto& a : t.attrs)
    if (a.filter) return true;
  return false;
}

} // namespace

std::string attribute_table_markdown(AttrDoc which) {
  std::string out =
      "<!-- generated from the attribute tables in src/toxics/ by "
      "toxics::attribute_table_markdown(); edit those, not this table -->\n\n";
  if (which == AttrDoc::RespFilter) {
    out += "| attribute | value | default | meaning |\n|---|---|---|---|\n";
    const TypeInfo* any = nullptr;
    for (const auto& t : registered_types())
      if (has_filter(t)) {
        any = &t;
        break;
      }
    if (any)
      for (const auto& a : any->attrs)
        if (a.filter)
          out += row({code(a.name), value_text(a), default_text(a), a.doc});
    return out;
  }
  const bool resp = which == AttrDoc::RespToxics;
  out += "| type | attribute | value | default | meaning |\n|---|---|---|---|---|\n";
  for (const auto& t : registered_types()) {
    if (has_filter(t) != resp) continue;
    bool first = true;
    for (const auto& a : t.attrs) {
      if (a.filter) continue;
      out += row({first ? code(t.name) : "", code(a.name), value_text(a), default_text(a), a.doc});
      first = false;
    }
    if (first)
      out += row({code(t.name), "—", "", "", resp ? "none besides the filter's" : "none"});
  }
  return out;
}

} // namespace faultline::toxics
