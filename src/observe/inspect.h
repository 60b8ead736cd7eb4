#pragma once
// `faultline inspect FILE`: reads a JSON Lines traffic log and summarises it for a person (a
// report read at a glance, with a per-second timeline drawn in the terminal) or for CI (--json).
// The text report is rendered from the JSON one, so both always say the same thing.
//
// Percentiles are exact (nearest rank over every latency in the log: the p-th percentile is the
// value at rank ceil(p * n) in ascending order), not estimated from buckets.

#include <cstdint>
#include <istream>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace faultline::observe {

class TrafficAnalyzer {
public:
  // One line of the log; empty lines are skipped, unreadable ones counted.
  void add_line(std::string_view line);
  void add_stream(std::istream& in);
  // The whole report as JSON. `top` bounds the slowest list, key prefixes and so on.
  nlohmann::json report(size_t top = 10) const;

private:
  struct Command {
    uint64_t calls = 0, errors = 0, faults = 0, bytes_in = 0, bytes_out = 0;
    std::vector<uint32_t> latencies;
  };
  struct Second {
    uint64_t requests = 0, errors = 0, faults = 0;
    std::vector<uint32_t> latencies;
    std::vector<std::string> toxics; // faults seen this second
  };
  struct Slow {
    uint64_t latency_us;
    uint64_t ts_us;
    std::string cmd, args, reply, fault, proxy;
    uint64_t session;
  };
  void add_request(const nlohmann::json& j, uint64_t ts);
  void add_event(const nlohmann::json& j, const std::string& ev, uint64_t ts);

  uint64_t lines_ = 0, bad_lines_ = 0, requests_ = 0, events_ = 0, errors_ = 0, faults_ = 0;
  uint64_t bytes_in_ = 0, bytes_out_ = 0;
  uint64_t first_us_ = UINT64_MAX, last_us_ = 0;
  std::map<std::string, Command> commands_;
  std::map<std::string, uint64_t> prefixes_, error_types_, fault_counts_, event_counts_;
  std::map<std::pair<std::string, uint64_t>, bool> sessions_;
  std::map<uint64_t, Second> seconds_; // unix second → counters
  std::vector<Slow> slowest_;           // a heap bounded at kKeepSlowest
  std::vector<nlohmann::json> toxic_events_;
  std::map<std::string, std::string> accept_open_; // proxy -> "accept=reset" while not normal
  std::vector<uint32_t> all_latencies_;
  // The "delivery" of command records (written since the traffic log follows deliveries).
  uint64_t followed_ = 0, delivered_ = 0, gone_ = 0, cut_ = 0, unfollowed_ = 0;
  std::vector<uint32_t> delivered_us_;
  std::map<std::string, uint64_t> undelivered_by_;
};

// Nearest-rank percentile of an unsorted sample (sorted in place). 0 when empty.
uint64_t percentile_nearest_rank(std::vector<uint32_t>& v, double p);

// "user:*" for "user:1234"; the key itself when it has no ':'.
std::string key_prefix(std::string_view key);

// The text report for a person. `color` adds ANSI colours.
std::string render_report(const nlohmann::json& report, bool color, std::string_view source);

// The `faultline inspect` subcommand (argv[0] is "inspect").
int run_inspect(int argc, char** argv);

} // namespace faultline::observe
