#include "profile/expect.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace faultline::profile {

using nlohmann::json;

namespace {

double to_ms(uint64_t us) { return std::round(static_cast<double>(us) / 100.0) / 10.0; }

} // namespace

// ---- [expect] ----

namespace {

// "2s", "500ms", "1.5s", "1m", or a number of milliseconds.
uint64_t parse_duration_ms(const json& v, const std::string& key) {
  if (v.is_number_unsigned() || v.is_number_integer()) {
    if (v.get<int64_t>() < 0) throw std::invalid_argument(key + ": must not be negative");
    return v.get<uint64_t>();
  }
  if (!v.is_string()) throw std::invalid_argument(key + ": expected a duration such as \"2s\"");
  std::string t = v.get<std::string>();
  size_t i = 0;
  double n = 0;
  try {
    n = std::stod(t, &i);
  } catch (const std::exception&) {
    throw std::invalid_argument(key + ": '" + t + "' is not a duration such as \"2s\"");
  }
  std::string unit = t.substr(i);
  double ms = unit == "ms" ? n : unit == "s" ? n * 1000 : unit == "m" ? n * 60000 : -1;
  if (ms < 0 || n < 0)
    throw std::invalid_argument(key + ": '" + t + "' is not a duration (units: ms, s, m)");
  return static_cast<uint64_t>(ms + 0.5);
}

uint64_t parse_count(const json& v, const std::string& key, bool none_ok) {
  if (none_ok && v.is_string() && v.get<std::string>() == "none") return 0;
  if ((v.is_number_unsigned() || v.is_number_integer()) && v.get<int64_t>() >= 0)
    return v.get<uint64_t>();
  throw std::invalid_argument(key + (none_ok ? ": expected \"none\" or a count"
                                             : ": expected a non-negative count"));
}

std::string fmt_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f ms", ms);
  return buf;
}

} // namespace

std::vector<Expectation> parse_expectations(const json& table) {
  if (!table.is_object()) throw std::invalid_argument("[expect] must be a table");
  std::vector<Expectation> out;
  for (const auto& [key, v] : table.items()) {
    Expectation e{};
    e.key = key;
    if (key == "recover_within") {
      e.kind = Expectation::Kind::RecoverWithin;
      e.limit = parse_duration_ms(v, key);
    } else if (key == "max_connects_per_second") {
      e.kind = Expectation::Kind::MaxConnectsPerSecond;
      e.limit = parse_count(v, key, false);
    } else if (key == "resends") {
      e.kind = Expectation::Kind::Resends;
      e.limit = parse_count(v, key, true);
    } else {
      throw std::invalid_argument("unknown key '" + key +
                                  "' (expected one of: recover_within, "
                                  "max_connects_per_second, resends)");
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::string_view to_string(ExpectVerdict::State s) {
  switch (s) {
  case ExpectVerdict::State::Pass: return "pass";
  case ExpectVerdict::State::Fail: return "FAIL";
  default: return "pending";
  }
}

std::vector<ExpectVerdict> evaluate(const std::vector<Expectation>& es, const observe::ClientRecord& r,
                                    uint64_t now_us, bool finished) {
  using S = ExpectVerdict::State;
  std::vector<ExpectVerdict> out;
  for (const auto& e : es) {
    ExpectVerdict v;
    v.key = e.key;
    switch (e.kind) {
    case Expectation::Kind::RecoverWithin: {
      v.expected = "<= " + fmt_ms(static_cast<double>(e.limit));
      // Worst over the windows that recovered; a window that has not is reported as such, with
      // how long it has waited, never as a measured time to recover.
      double worst = -1, waited = -1;
      bool open = false, any = false, over = false;
      for (const auto& w : r.windows()) {
        if (!w.end_us) {
          open = true;  // still faulted: undecided
          continue;
        }
        any = true;
        if (auto t = w.time_to_recover_ms()) {
          worst = std::max(worst, *t);
          over = over || *t > static_cast<double>(e.limit);
        } else {
          double so_far = to_ms(now_us > *w.end_us ? now_us - *w.end_us : 0);
          waited = std::max(waited, so_far);
          over = over || so_far > static_cast<double>(e.limit);
        }
      }
      if (!any) v.measured = open ? "fault still in effect" : "no fault window ended";
      else if (waited >= 0)
        v.measured = "not recovered after " + fmt_ms(waited) +
                     (worst >= 0 ? ", others worst " + fmt_ms(worst) : std::string());
      else v.measured = "worst " + fmt_ms(worst);
      if (over) v.state = S::Fail;
      else if (open || waited >= 0 || !finished) v.state = S::Pending;
      else v.state = any ? S::Pass : S::Fail;
      break;
    }
    case Expectation::Kind::MaxConnectsPerSecond:
      v.expected = "<= " + std::to_string(e.limit) + "/s";
      v.measured = "peak " + std::to_string(r.peak_connects_per_second()) + "/s";
      v.state = r.peak_connects_per_second() > e.limit ? S::Fail : finished ? S::Pass : S::Pending;
      break;
    case Expectation::Kind::Resends:
      v.expected = e.limit == 0 ? "none" : "<= " + std::to_string(e.limit);
      v.measured = std::to_string(r.resends());
      v.state = r.resends() > e.limit ? S::Fail : finished ? S::Pass : S::Pending;
      break;
    }
    out.push_back(std::move(v));
  }
  return out;
}

} // namespace faultline::profile
