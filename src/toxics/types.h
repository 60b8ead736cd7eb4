#pragma once
// The one registry of toxic types. Each type's factory lives in its own file; adding a type
// means adding its file and one line to builtin_types() in registry.cpp.

#include <span>
#include <string_view>

#include "toxics/toxic.h"

namespace faultline::toxics {

struct TypeEntry {
  std::string_view name;
  std::shared_ptr<const ToxicImpl> (*make)(const nlohmann::json& attrs);
};

std::span<const TypeEntry> builtin_types();

// Connection-level (Toxiproxy's set).
std::shared_ptr<const ToxicImpl> make_latency(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_bandwidth(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_slow_close(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_timeout(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_reset_peer(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_slicer(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_limit_data(const nlohmann::json& attrs);

// RESP-aware (see resp_rule.h).
std::shared_ptr<const ToxicImpl> make_resp_error(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_resp_reply(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_resp_delay(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_resp_hang(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_resp_reset(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_resp_close(const nlohmann::json& attrs);
std::shared_ptr<const ToxicImpl> make_truncate(const nlohmann::json& attrs);

} // namespace faultline::toxics
