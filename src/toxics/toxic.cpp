#include "toxics/toxic.h"

#include <fmt/format.h>

#include "toxics/types.h"

namespace faultline::toxics {

std::string_view to_string(Stream s) { return s == Stream::Upstream ? "upstream" : "downstream"; }

bool parse_stream(std::string_view text, Stream& out) {
  if (text == "upstream") out = Stream::Upstream;
  else if (text == "downstream") out = Stream::Downstream;
  else return false;
  return true;
}

nlohmann::json Toxic::to_json() const {
  return {{"name", name},
          {"type", type},
          {"stream", std::string(to_string(stream))},
          {"toxicity", toxicity},
          {"attributes", impl ? impl->attributes() : nlohmann::json::object()}};
}

bool known_type(std::string_view type) {
  for (const auto& t : builtin_types())
    if (t.name == type) return true;
  return false;
}

std::shared_ptr<const ToxicImpl> make_impl(std::string_view type, const nlohmann::json& attrs) {
  if (!attrs.is_null() && !attrs.is_object()) throw ToxicError("attributes must be an object");
  const nlohmann::json& a = attrs.is_null() ? nlohmann::json::object() : attrs;
  for (const auto& t : builtin_types())
    if (t.name == type) return t.make(a);
  throw ToxicError(fmt::format("unknown toxic type '{}'", type));
}

std::vector<std::string> type_names() {
  std::vector<std::string> out;
  for (const auto& t : builtin_types()) out.emplace_back(t.name);
  return out;
}

namespace {
const nlohmann::json* find(const nlohmann::json& attrs, const char* key) {
  auto it = attrs.find(key);
  return it == attrs.end() || it->is_null() ? nullptr : &*it;
}
} // namespace

int64_t attr_int(const nlohmann::json& attrs, const char* key, int64_t def, int64_t min,
                 int64_t max) {
  const nlohmann::json* v = find(attrs, key);
  if (!v) return def;
  int64_t out;
  if (v->is_number_integer() || v->is_number_unsigned()) {
    if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      throw ToxicError(fmt::format("attribute '{}' is out of range ({}..{})", key, min, max));
    out = v->get<int64_t>();
  } else if (v->is_number_float()) {
    double d = v->get<double>();
    if (d != static_cast<double>(static_cast<int64_t>(d)))
      throw ToxicError(fmt::format("attribute '{}' must be a whole number", key));
    out = static_cast<int64_t>(d);
  } else {
    throw ToxicError(fmt::format("attribute '{}' must be a number", key));
  }
  if (out < min || out > max)
    throw ToxicError(fmt::format("attribute '{}' is out of range ({}..{})", key, min, max));
  return out;
}

double attr_double(const nlohmann::json& attrs, const char* key, double def, double min,
                   double max) {
  const nlohmann::json* v = find(attrs, key);
  if (!v) return def;
  if (!v->is_number()) throw ToxicError(fmt::format("attribute '{}' must be a number", key));
  double d = v->get<double>();
  if (!(d >= min && d <= max))
    throw ToxicError(fmt::format("attribute '{}' is out of range ({}..{})", key, min, max));
  return d;
}

} // namespace faultline::toxics
