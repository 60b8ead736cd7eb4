#pragma once
// A profile's `[expect]`: what its clients must have done, decided against the ClientRecord that
// observe/clients.h keeps per proxy.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "observe/clients.h"

namespace faultline::profile {

// A profile's `[expect]` table, decided against a proxy's record:
//   recover_within = "2s"          every fault window ends in a good reply within this long
//   max_connects_per_second = 20   the peak connect rate stays at or under this
//   resends = "none"               (or a number: at most this many resends)
struct Expectation {
  enum class Kind { RecoverWithin, MaxConnectsPerSecond, Resends };
  Kind kind;
  std::string key;     // as written
  uint64_t limit = 0;  // ms for RecoverWithin, a count otherwise
};
// Parses the table (TOML converted to JSON). Throws std::invalid_argument naming the key.
std::vector<Expectation> parse_expectations(const nlohmann::json& table);

struct ExpectVerdict {
  enum class State { Pending, Pass, Fail };
  std::string key;
  std::string expected;
  std::string measured;
  State state = State::Pending;
};
std::string_view to_string(ExpectVerdict::State s);
// `finished`: the timeline is over, so what has not failed by now passes, except a window
// still waiting for its recovery (pending until it recovers or runs out of time).
std::vector<ExpectVerdict> evaluate(const std::vector<Expectation>& e, const observe::ClientRecord& r,
                                    uint64_t now_us, bool finished);

} // namespace faultline::profile
