#pragma once
// The one registry of toxic types. A type registers itself from its own file, with a static
// ToxicType object: its name, its place in listings, its attribute table and its class.
//
//   // src/toxics/latency.cpp
//   const ToxicType<StageToxic<LatencyParams, LatencyStage>> kType{"latency", 10, {
//       int_attr("latency", &LatencyParams::latency_ms, "ms", {0, 3'600'000}, 0, "..."),
//       ...}};
//
// Adding a type is adding its file: nothing else names it. This relies on every object file of
// src/ being linked into each program and test, which faultline_lib guarantees by being an
// OBJECT library (see CMakeLists.txt): from a static archive the linker would drop a file that
// nothing references, and with it the registration.

#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "toxics/attributes.h"
#include "toxics/toxic.h"

namespace faultline::toxics {

struct TypeInfo {
  std::string_view name;
  // Place in listings (type_names(), error messages): Toxiproxy's types in Toxiproxy's order,
  // then faultline's. Tens, so that a new type can go between two others.
  int order = 0;
  std::vector<AttrInfo> attrs; // every attribute, the RESP filter's included (AttrInfo::filter)
  std::function<std::shared_ptr<const ToxicImpl>(const nlohmann::json& attrs)> make;
};

// Called by ToxicType during static initialisation; a name registered twice aborts.
void register_type(TypeInfo t);
// In listing order.
std::span<const TypeInfo> registered_types();
const TypeInfo* find_type(std::string_view name);

// A toxic's parameters, as parsed by its type's table, and its JSON from the same table.
template <class P> class ParamToxic : public ToxicImpl {
public:
  using Params = P;
  ParamToxic(P p, const AttrTable<P>& attrs) : p_(std::move(p)), attrs_(attrs) {}
  nlohmann::json attributes() const override { return attrs_.to_json(p_); }

protected:
  const P p_;
  const AttrTable<P>& attrs_;
};

// A connection-level toxic whose per-session state is a stage S(Output&, const P&).
template <class P, class S> class StageToxic final : public ParamToxic<P> {
public:
  using ParamToxic<P>::ParamToxic;
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<S>(out, this->p_);
  }
};

// Registers type T (a ParamToxic, constructed from its parsed parameters and the table) under
// `name`. `base` gives the parameters no attribute sets (one class serving two types).
template <class T> class ToxicType {
public:
  using Params = typename T::Params;
  ToxicType(std::string_view name, int order, AttrTable<Params> attrs, Params base = {})
      : name_(name), attrs_(std::move(attrs)), base_(std::move(base)) {
    register_type({name_, order, attrs_.infos(),
                   [this](const nlohmann::json& given) -> std::shared_ptr<const ToxicImpl> {
                     return std::make_shared<T>(attrs_.parse(name_, given, base_), attrs_);
                   }});
  }
  ToxicType(const ToxicType&) = delete;
  ToxicType& operator=(const ToxicType&) = delete;

private:
  std::string_view name_;
  AttrTable<Params> attrs_;
  Params base_;
};

} // namespace faultline::toxics
