#pragma once
// A toxic type's attributes, declared once, as Toxiproxy's struct tags declare them: for each
// its JSON name, the member of the type's parameter struct it fills, its kind, unit, range,
// default and one line of doc.
//
//   AttrTable<P> ─┬─ parse(type, JSON) ─► P        (validation; messages name the attribute)
//                 ├─ to_json(P)        ─► JSON     (the toxic's "attributes")
//                 └─ infos()           ─► AttrInfo (names; the docs' attribute_table_markdown)
//
//   const ToxicType<Slicer> kSlicer{"slicer", 60, {
//     //       name            member                       unit     range         default
//     int_attr("average_size", &SlicerParams::average_size, "bytes", {1, 1 << 30}, required,
//              "the pieces' mean size"), // doc
//     ...}};
//
// What a table cannot say (one attribute constraining another, derived state) the type's
// constructor checks, throwing ToxicError with the attribute's name.

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "toxics/toxic.h"

namespace faultline::toxics {

enum class AttrKind : uint8_t {
  Int,    // a whole number (a float with no fraction is accepted, as some clients send)
  Number, // any number
  Choice, // one of a few strings
  String,
  List,   // strings: a JSON array, or one comma-separated string
};

// One attribute as the outside sees it: the docs, listings of a type's names.
struct AttrInfo {
  std::string_view name{}; // the JSON key (Toxiproxy's name where Toxiproxy has the attribute)
  AttrKind kind = AttrKind::Int;
  std::string_view unit{}; // "ms", "bytes"...; for a string, its form ("host:port")
  int64_t int_min = 0, int_max = 0;       // Int
  double num_min = 0, num_max = 0;        // Number
  std::vector<std::string_view> choices{}; // Choice
  nlohmann::json def{};                   // the default, as JSON; null when required or none
  std::string_view def_doc{};             // the default in words, where JSON says it badly
  bool required = false;
  bool filter = false;                    // one of the shared RESP filter's attributes
  std::string_view doc{};                 // one line
};

template <class T> struct Range {
  T min, max;
};

// In the default's place: the attribute must be given.
struct Required {};
inline constexpr Required required{};

template <class T> struct Default {
  std::optional<T> value; // empty: required
  Default(Required) {}
  template <class U>
    requires std::is_convertible_v<U, T>
  Default(U&& v) : value(T(std::forward<U>(v))) {}
};

// One attribute of parameter struct P: its description and the functions that move it
// between JSON and P. Made by the *_attr functions below.
template <class P> struct Attr {
  AttrInfo info;
  std::function<void(P&)> set_default;
  std::function<void(const nlohmann::json&, P&)> read; // a value given (not null)
  std::function<nlohmann::json(const P&)> write;
  std::function<bool(const P&)> shown; // in to_json(); empty: always

  // Left out of the JSON while it has its default (the filter's keys, first...).
  Attr omit_default() && {
    shown = [w = write, d = info.def](const P& p) { return w(p) != d; };
    return std::move(*this);
  }
  // In the JSON only when `when` holds (resp_error's address, for moved/ask).
  Attr shown_if(std::function<bool(const P&)> when) && {
    shown = std::move(when);
    return std::move(*this);
  }
  // A reader of its own for a given value; it sees the attributes read before it.
  Attr read_with(std::function<void(const nlohmann::json&, P&)> r) && {
    read = std::move(r);
    return std::move(*this);
  }
};

// Readers of one JSON value, with the messages every type shares. They throw ToxicError.
namespace attr {
int64_t read_int(const nlohmann::json& v, std::string_view name, Range<int64_t> r);
double read_number(const nlohmann::json& v, std::string_view name, Range<double> r);
std::string read_choice(const nlohmann::json& v, std::string_view name,
                        const std::vector<std::string_view>& choices);
std::string read_string(const nlohmann::json& v, std::string_view name, std::string_view form);
std::vector<std::string> read_list(const nlohmann::json& v, std::string_view name);
[[noreturn]] void missing(std::string_view type, std::string_view name);
// A name the type does not take: says which it does take.
[[noreturn]] void unknown(std::string_view type, std::string_view name,
                          const std::vector<AttrInfo>& known);
} // namespace attr

template <class P>
Attr<P> int_attr(std::string_view name, int64_t P::*m, std::string_view unit, Range<int64_t> r,
                 Default<int64_t> def, std::string_view doc) {
  Attr<P> a;
  a.info = {.name = name, .kind = AttrKind::Int, .unit = unit, .int_min = r.min,
            .int_max = r.max, .required = !def.value, .doc = doc};
  int64_t d = def.value.value_or(0);
  if (def.value) a.info.def = d;
  a.set_default = [m, d](P& p) { p.*m = d; };
  a.read = [m, name, r](const nlohmann::json& v, P& p) { p.*m = attr::read_int(v, name, r); };
  a.write = [m](const P& p) { return nlohmann::json(p.*m); };
  return a;
}

template <class P>
Attr<P> number_attr(std::string_view name, double P::*m, std::string_view unit, Range<double> r,
                    Default<double> def, std::string_view doc) {
  Attr<P> a;
  a.info = {.name = name, .kind = AttrKind::Number, .unit = unit, .num_min = r.min,
            .num_max = r.max, .required = !def.value, .doc = doc};
  double d = def.value.value_or(0.0);
  if (def.value) a.info.def = d;
  a.set_default = [m, d](P& p) { p.*m = d; };
  a.read = [m, name, r](const nlohmann::json& v, P& p) { p.*m = attr::read_number(v, name, r); };
  a.write = [m](const P& p) { return nlohmann::json(p.*m); };
  return a;
}

template <class P>
Attr<P> choice_attr(std::string_view name, std::string P::*m,
                    std::initializer_list<std::string_view> choices, Default<std::string> def,
                    std::string_view doc) {
  Attr<P> a;
  a.info = {.name = name, .kind = AttrKind::Choice, .choices = choices,
            .required = !def.value, .doc = doc};
  std::string d = def.value.value_or("");
  if (def.value) a.info.def = d;
  a.set_default = [m, d](P& p) { p.*m = d; };
  a.read = [m, name, c = a.info.choices](const nlohmann::json& v, P& p) {
    p.*m = attr::read_choice(v, name, c);
  };
  a.write = [m](const P& p) { return nlohmann::json(p.*m); };
  return a;
}

// `form` says what the string holds ("host:port"); error messages repeat it.
template <class P>
Attr<P> string_attr(std::string_view name, std::string P::*m, std::string_view form,
                    Default<std::string> def, std::string_view doc) {
  Attr<P> a;
  a.info = {.name = name, .kind = AttrKind::String, .unit = form, .required = !def.value,
            .doc = doc};
  std::string d = def.value.value_or("");
  if (def.value) a.info.def = d;
  a.set_default = [m, d](P& p) { p.*m = d; };
  a.read = [m, name, form](const nlohmann::json& v, P& p) {
    p.*m = attr::read_string(v, name, form);
  };
  a.write = [m](const P& p) { return nlohmann::json(p.*m); };
  return a;
}

// Not given stays empty (std::nullopt), so that a type can tell "not given" from "[]" and
// pick its own default (resp_error's presets name the commands Redis itself would refuse);
// `def_doc` says in words what not giving it means.
template <class P>
Attr<P> list_attr(std::string_view name, std::optional<std::vector<std::string>> P::*m,
                  std::string_view unit, std::string_view def_doc, std::string_view doc) {
  Attr<P> a;
  a.info = {.name = name, .kind = AttrKind::List, .unit = unit, .def_doc = def_doc, .doc = doc};
  a.set_default = [m](P& p) { (p.*m).reset(); };
  a.read = [m, name](const nlohmann::json& v, P& p) { p.*m = attr::read_list(v, name); };
  a.write = [m](const P& p) {
    return nlohmann::json((p.*m).value_or(std::vector<std::string>{}));
  };
  return a;
}

// An attribute of a part of P (the RESP filter's parameters inside a RESP type's): the same
// attribute, reading and writing P::*part.
template <class P, class Q> Attr<P> lift(const Attr<Q>& a, Q P::*part) {
  Attr<P> out;
  out.info = a.info;
  out.set_default = [f = a.set_default, part](P& p) { f(p.*part); };
  out.read = [f = a.read, part](const nlohmann::json& v, P& p) { f(v, p.*part); };
  out.write = [f = a.write, part](const P& p) { return f(p.*part); };
  if (a.shown) out.shown = [f = a.shown, part](const P& p) { return f(p.*part); };
  return out;
}

template <class P> class AttrTable {
public:
  AttrTable(std::initializer_list<Attr<P>> attrs) : attrs_(attrs) {}
  explicit AttrTable(std::vector<Attr<P>> attrs) : attrs_(std::move(attrs)) {}

  // The attributes given (a JSON object), over `base`: each attribute in table order, its
  // default when not given or null. A name the table lacks is refused, unless its value is null
  // (null means "not given" everywhere, and sets nothing).
  P parse(std::string_view type, const nlohmann::json& given, P base = {}) const {
    for (const auto& [key, value] : given.items())
      if (!value.is_null() && !has(key))
        attr::unknown(type, key, infos());
    P p = std::move(base);
    for (const auto& a : attrs_) {
      auto it = given.find(std::string(a.info.name));
      if (it == given.end() || it->is_null()) {
        if (a.info.required) attr::missing(type, a.info.name);
        a.set_default(p);
      } else {
        a.read(*it, p);
      }
    }
    return p;
  }
  nlohmann::json to_json(const P& p) const {
    nlohmann::json out = nlohmann::json::object();
    for (const auto& a : attrs_)
      if (!a.shown || a.shown(p)) out[std::string(a.info.name)] = a.write(p);
    return out;
  }
  std::vector<AttrInfo> infos() const {
    std::vector<AttrInfo> out;
    for (const auto& a : attrs_) out.push_back(a.info);
    return out;
  }
  const std::vector<Attr<P>>& attrs() const { return attrs_; }
  bool has(std::string_view name) const {
    for (const auto& a : attrs_)
      if (a.info.name == name)
        return true;
    for (std::string_view o : output_only_)
      if (o == name)
        return true;
    return false;
  }
  // Names the toxic's JSON shows but nothing sets (counters): taken back and ignored, so that a
  // client may send a toxic's attributes as it read them.
  void output_only(std::initializer_list<std::string_view> names) {
    output_only_.insert(output_only_.end(), names);
  }
  // Appends the attributes of part P::*part (see lift), marked `filter` when they are the
  // shared RESP filter's.
  template <class Q> void include(const AttrTable<Q>& t, Q P::*part, bool filter) {
    for (const auto& a : t.attrs()) {
      attrs_.push_back(lift(a, part));
      attrs_.back().info.filter = filter;
    }
  }

private:
  std::vector<Attr<P>> attrs_;
  std::vector<std::string_view> output_only_;
};

// The reference tables of docs/toxics.md and docs/resp-faults.md, generated from the tables
// of the registered types (a unit test keeps the docs equal to them).
enum class AttrDoc {
  ConnectionToxics, // every type without the RESP filter: type, attribute, value, default, doc
  RespToxics,       // every type with it, its own attributes only
  RespFilter,       // the filter's attributes, shared by the RESP types
};
std::string attribute_table_markdown(AttrDoc which);

} // namespace faultline::toxics
