#include "toxics/registry.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>

#include <fmt/format.h>

namespace faultline::toxics {

namespace {
// Constructed on first use: registrations run during static initialisation, in an order
// across files that C++ leaves open; the list is kept sorted by TypeInfo::order instead.
std::vector<TypeInfo>& types() {
  static std::vector<TypeInfo> all;
  return all;
}

[[noreturn]] void clash(std::string_view what, std::string_view a, std::string_view b) {
  std::fprintf(stderr, "faultline: toxic types '%.*s' and '%.*s' have the same %.*s\n",
               static_cast<int>(a.size()), a.data(), static_cast<int>(b.size()), b.data(),
               static_cast<int>(what.size()), what.data());
  std::abort();
}
} // namespace

void register_type(TypeInfo t) {
  auto& all = types();
  for (const auto& x : all) {
    if (x.name == t.name) clash("name", x.name, t.name);
    if (x.order == t.order) clash("order", x.name, t.name);
  }
  auto at = std::find_if(all.begin(), all.end(), [&](const auto& x) { return x.order > t.order; });
  all.insert(at, std::move(t));
}

std::span<const TypeInfo> registered_types() { return types(); }

const TypeInfo* find_type(std::string_view name) {
  for (const auto& t : types())
    if (t.name == name) return &t;
  return nullptr;
}

bool known_type(std::string_view type) { return find_type(type) != nullptr; }

std::shared_ptr<const ToxicImpl> make_impl(std::string_view type, const nlohmann::json& attrs) {
  if (!attrs.is_null() && !attrs.is_object()) throw ToxicError("attributes must be an object");
  const TypeInfo* t = find_type(type);
  if (!t) throw ToxicError(fmt::format("unknown toxic type '{}'", type));
  return t->make(attrs.is_null() ? nlohmann::json::object() : attrs);
}

std::vector<std::string> type_names() {
  std::vector<std::string> out;
  for (const auto& t : types()) out.emplace_back(t.name);
  return out;
}

std::vector<std::string_view> attribute_names(std::string_view type) {
  std::vector<std::string_view> out;
  if (const TypeInfo* t = find_type(type))
    for (const auto& a : t->attrs) out.push_back(a.name);
  return out;
}

} // namespace faultline::toxics
