#include "control/profiles.h"

#include <cctype>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "control/api.h"
#include "profile/profile.h"
#include "profile/runner.h"

namespace faultline::profile {

using control::ApiError;

namespace {

bool query_flag(const control::Request& req, const char* key) {
  auto it = req.query.find(key);
  if (it == req.query.end()) return false;
  if (it->second == "true" || it->second == "1" || it->second.empty()) return true;
  if (it->second == "false" || it->second == "0") return false;
  throw ApiError(400, fmt::format("query parameter '{}' must be true or false", key));
}

bool looks_like_json(const control::Request& req) {
  if (const std::string* ct = req.header("Content-Type"))
    if (ct->find("json") != std::string::npos) return true;
  for (char c : req.body)
    if (!std::isspace(static_cast<unsigned char>(c))) return c == '{';
  return false;
}

} // namespace

void api_start(Manager& m, control::Request& req, control::Response& res) {
  bool replace = query_flag(req, "replace");
  std::optional<double> speed;
  if (auto it = req.query.find("speed"); it != req.query.end()) {
    double v = 0;
    auto [p, ec] = std::from_chars(it->second.data(), it->second.data() + it->second.size(), v);
    if (ec != std::errc() || p != it->second.data() + it->second.size() || !(v > 0) ||
        !std::isfinite(v))
      throw ApiError(400, "query parameter 'speed' must be a number above 0");
    speed = v;
  }
  const std::string source = "POST /profiles";
  Profile p;
  try {
    if (looks_like_json(req)) {
      nlohmann::json doc;
      try {
        doc = nlohmann::json::parse(req.body);
      } catch (const nlohmann::json::exception& e) {
        throw ApiError(400, fmt::format("{}: bad JSON: {}", source, e.what()));
      }
      p = load_json(doc, source, m.load_options());
    } else {
      p = load_toml(req.body, source, m.load_options());
    }
  } catch (const LoadError& e) {
    throw ApiError(400, e.what());
  }
  try {
    Runner& r = m.start(std::move(p), replace, {}, speed);
    res.json(201, r.report());
  } catch (const Manager::Conflict& e) {
    throw ApiError(409, e.what());
  } catch (const std::runtime_error& e) {
    throw ApiError(400, e.what());
  }
}

void api_list(Manager& m, control::Request&, control::Response& res) { res.json(200, m.list()); }

void api_show(Manager& m, control::Request& req, control::Response& res) {
  const Runner* r = m.find(req.param("name"));
  if (!r) throw ApiError(404, "profile not found");
  res.json(200, r->report());
}

void api_stop(Manager& m, control::Request& req, control::Response& res) {
  const std::string& name = req.param("name");
  if (!m.stop(name, "DELETE /profiles/" + name) && !m.find(name))
    throw ApiError(404, "profile not found");
  res.empty(204);
}

int run_profile_command(int argc, char** argv) {
  auto usage = [] {
    fmt::print(stderr,
               "usage: faultline profile check [--mode single|cluster|sentinel] FILE...\n"
               "  Validates chaos profiles: exit 0 when every file is valid, 2 otherwise\n"
               "  (each error as FILE:LINE:COLUMN: what is wrong). --mode also checks the\n"
               "  deployment actions against the run's mode (faultline --cluster, --sentinel,\n"
               "  or neither: single), as --profile does when it loads.\n");
  };
  if (argc < 2) {
    usage();
    return 2;
  }
  std::string cmd = argv[1];
  if (cmd == "-h" || cmd == "--help") {
    usage();
    return 0;
  }
  if (cmd != "check") {
    usage();
    return 2;
  }
  LoadOptions opts;
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    if (a == "--mode") {
      if (i + 1 >= argc) {
        fmt::print(stderr, "faultline profile check: --mode needs a value: single, cluster or "
                           "sentinel\n");
        return 2;
      }
      value = argv[++i];
    } else if (a.rfind("--mode=", 0) == 0) {
      value = a.substr(7);
    } else if (a.size() > 1 && a[0] == '-') {
      fmt::print(stderr, "faultline profile check: unknown option '{}'\n", a);
      usage();
      return 2;
    } else {
      files.push_back(a);
      continue;
    }
    if (value == "single") opts.mode = Mode::Single;
    else if (value == "cluster") opts.mode = Mode::Cluster;
    else if (value == "sentinel") opts.mode = Mode::Sentinel;
    else {
      fmt::print(stderr, "faultline profile check: --mode must be single, cluster or sentinel, "
                         "not '{}'\n", value);
      return 2;
    }
  }
  if (files.empty()) {
    usage();
    return 2;
  }
  int rc = 0;
  for (const auto& file : files) {
    try {
      Profile p = load_file(file, opts);
      fmt::print("{}: ok: profile {}, {} step{} over {}{}{}\n", file, p.name, p.steps.size(),
                 p.steps.size() == 1 ? "" : "s",
                 format_duration(p.length_ms), p.loop ? ", looping" : "",
                 p.seed ? fmt::format(", seed {}", *p.seed) : "");
      // The mode its deployment actions need (what --mode, or the run, must be).
      std::optional<Mode> needs;
      for (const auto& s : p.steps) {
        if (s.action == Action::SentinelFailover) needs = Mode::Sentinel;
        else if (s.action == Action::ClusterFailover || s.action == Action::MigrateSlots)
          needs = Mode::Cluster;
      }
      if (needs)
        fmt::print("  needs {} mode (faultline {})\n", to_string(*needs),
                   *needs == Mode::Cluster ? "--cluster HOST:PORT"
                                           : "--sentinel HOST:PORT --master NAME");
      for (const auto& s : p.steps) {
        std::string when = fmt::format("{:>8}", format_duration(s.at_ms));
        std::string until =
            s.instantaneous() ? "" : fmt::format(" .. {}", format_duration(s.end_ms(p.length_ms)));
        fmt::print("  {}{:<12} {}{}\n", when, until, s.label,
                   s.label == s.describe() ? "" : fmt::format(" ({})", s.describe()));
      }
      for (const auto& [key, v] : p.expect.items())
        fmt::print("  expect {} = {}\n", key, v.dump());
    } catch (const LoadError& e) {
      fmt::print(stderr, "{}\n", e.what());
      rc = 2;
    }
  }
  return rc;
}

} // namespace faultline::profile
