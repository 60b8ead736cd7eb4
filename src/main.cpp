// faultline: a Redis-aware TCP fault-injection proxy.
//
//   faultline [options]            run the proxy (and the control API)
//   faultline ctl ...              drive a running faultline from a terminal
//   faultline inspect FILE         summarise a traffic log
//   faultline profile check FILE   validate a chaos profile

#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <string>

#include <cxxopts.hpp>
#include <fmt/format.h>
#include <uv.h>

#include "app.h"
#include "base/log.h"
#include "uv/platform.h"

using namespace faultline;

namespace {

int usage_error(const std::string& msg) {
  fmt::print(stderr, "faultline: {}\nTry 'faultline --help'.\n", msg);
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  uv::platform::init_process();
  if (argc >= 2) {
    std::string sub = argv[1];
    if (sub == "ctl" || sub == "inspect" || sub == "profile")
      return run_subcommand(sub, argc - 1, argv + 1);
  }

  cxxopts::Options opts("faultline",
                        "A Redis-aware TCP fault-injection proxy.\n\n"
                        "Listens on --listen, forwards every connection to --upstream byte for "
                        "byte, and injects faults\non command through a Toxiproxy-compatible "
                        "HTTP API.\n\nSubcommands: ctl, inspect FILE, profile check FILE "
                        "(each has --help).\n");
  opts.set_width(100);
  AppConfig cfg;
  // clang-format off
  opts.add_options()
    ("l,listen", "address the first proxy (named 'redis') listens on",
       cxxopts::value<std::string>()->default_value("127.0.0.1:6381"))
    ("u,upstream", "the Redis to forward to",
       cxxopts::value<std::string>()->default_value("127.0.0.1:6379"))
    ("connect-timeout-ms", "upstream connect timeout",
       cxxopts::value<uint32_t>()->default_value("2000"))
    ("backlog", "listen backlog of every proxy (default: the system's somaxconn, at least 511)",
       cxxopts::value<std::string>())
    ("api", "control API address (loopback unless you say otherwise); 'off' disables it",
       cxxopts::value<std::string>()->default_value("127.0.0.1:8474"))
    ("api-token", "require 'Authorization: Bearer TOKEN' on the API (or FAULTLINE_API_TOKEN)",
       cxxopts::value<std::string>()->default_value(""))
    ("seed", "seed for every random choice (toxicity, jitter, probability)",
       cxxopts::value<uint64_t>())
    ("no-resp", "do not parse RESP (pure TCP proxy: no pairing, logs or RESP-aware faults)")
    ("log-level", "lifecycle log on stderr: debug, info, warn, error, off",
       cxxopts::value<std::string>()->default_value("info"))
    ("port-file", "once listening, write the bound addresses (port 0 resolved) to FILE",
       cxxopts::value<std::string>())
    ("h,help", "show this help")
    ("version", "print the version");
  // clang-format on
  add_app_options(opts);

  cxxopts::ParseResult r;
  try {
    r = opts.parse(argc, argv);
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (r.count("help")) {
    fmt::print("{}", opts.help());
    return 0;
  }
  if (r.count("version")) {
    fmt::print("faultline {}\n", FAULTLINE_VERSION);
    return 0;
  }
  if (!r.unmatched().empty()) return usage_error(fmt::format("unexpected argument '{}'",
                                                             r.unmatched().front()));
  log::Level lvl;
  if (!log::parse_level(r["log-level"].as<std::string>(), lvl))
    return usage_error(fmt::format("bad --log-level '{}' (debug, info, warn, error, off)",
                                   r["log-level"].as<std::string>()));
  log::set_level(lvl);
  try {
    cfg.listen = r["listen"].as<std::string>();
    cfg.upstream = r["upstream"].as<std::string>();
    cfg.connect_timeout_ms = r["connect-timeout-ms"].as<uint32_t>();
    if (r.count("backlog")) {
      const std::string v = r["backlog"].as<std::string>();
      int64_t b = 0;
      auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), b);
      if (ec != std::errc() || end != v.data() + v.size() || b < 1 || b > 2147483647)
        return usage_error(
            fmt::format("--backlog must be a whole number from 1 to 2147483647, not '{}'", v));
      cfg.backlog = static_cast<int>(b);
    }
    cfg.api = r["api"].as<std::string>();
    cfg.api_token = r["api-token"].as<std::string>();
    if (cfg.api_token.empty())
      if (const char* t = std::getenv("FAULTLINE_API_TOKEN")) cfg.api_token = t;
    if (r.count("seed")) cfg.seed = r["seed"].as<uint64_t>();
    cfg.parse_resp = r.count("no-resp") == 0;
    if (r.count("port-file")) cfg.port_file = r["port-file"].as<std::string>();
    std::string err;
    if (!read_app_options(r, cfg, err)) return usage_error(err);
  } catch (const std::exception& e) {
    return usage_error(e.what());
  }
  if (cfg.connect_timeout_ms == 0) return usage_error("--connect-timeout-ms must be above 0");
  return run_app(cfg);
}
