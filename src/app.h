#pragma once
// The running program: wires the proxies, the control API, profiles and logs onto one loop.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cxxopts {
class Options;
class ParseResult;
} // namespace cxxopts

namespace faultline {

struct AppConfig {
  std::string listen = "127.0.0.1:6381";
  std::string upstream = "127.0.0.1:6379";
  uint32_t connect_timeout_ms = 2000;
  int backlog = 0;                // --backlog; 0: the system's somaxconn, at least 511
  std::string api = "127.0.0.1:8474";
  std::string api_token;
  std::optional<uint64_t> seed;
  bool parse_resp = true;
  std::string profile;            // --profile FILE
  bool exit_after_profile = false;
  double profile_speed = 1.0;     // --profile-speed: the timeline runs this many times faster
  // Traffic log and metrics (--log...): see observe/traffic_log.h.
  std::string log_path;           // --log FILE, "-" for stdout
  std::string log_dir;            // --log-dir DIR: where the API may write files (POST /log)
  std::string log_format;         // json, text; empty: json for files, text for stdout
  uint32_t log_max_arg_bytes = 64;
  std::string log_commands, log_keys;
  uint64_t log_slower_than_us = 0;
  double log_sample = 1.0;
  bool metrics = true;            // --no-metrics
  std::string port_file;          // --port-file: the bound addresses, once listening
  // Cluster mode (topology/cluster.h): --cluster HOST:PORT (repeatable seeds).
  std::vector<std::string> cluster;
  // Sentinel mode (topology/sentinel.h): --sentinel HOST:PORT (repeatable) --master NAME.
  std::vector<std::string> sentinels;
  std::string master_name;
  uint32_t topology_refresh_ms = 1000;
  std::string announce_host;      // --announce-host: the host clients are told
};

// Options that later parts (traffic log, profiles) add to the main command line.
void add_app_options(cxxopts::Options& opts);
bool read_app_options(const cxxopts::ParseResult& r, AppConfig& cfg, std::string& err);

int run_app(const AppConfig& cfg);
int run_subcommand(const std::string& name, int argc, char** argv);

} // namespace faultline
