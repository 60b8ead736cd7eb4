#include "observe/inspect.h"

#include "uv/platform.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>

#include <cxxopts.hpp>
#include <fmt/format.h>

#include "observe/record.h"

namespace faultline::observe {

namespace {

constexpr size_t kKeepSlowest = 100;

std::string str_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

uint64_t uint_field(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer()) return static_cast<uint64_t>(std::max<int64_t>(0, it->get<int64_t>()));
  return static_cast<uint64_t>(std::max(0.0, it->get<double>()));
}

std::string reply_brief(const nlohmann::json& r) {
  if (!r.is_object()) return {};
  std::string type = str_field(r, "type");
  if (type == "null") return "(nil)";
  if (r.contains("text") && r["text"].is_string()) {
    if (type == "error" || type == "blob_error") return "(error) " + r["text"].get<std::string>();
    if (type == "bulk" || type == "verbatim") return "\"" + r["text"].get<std::string>() + "\"";
    return r["text"].get<std::string>();
  }
  if (r.contains("value")) return "(" + type + ") " + r["value"].dump();
  if (r.contains("count")) return fmt::format("({} of {})", type, r["count"].dump());
  return "(" + type + ")";
}

std::string fmt_us(double us) {
  if (us < 1000) return fmt::format("{}us", static_cast<uint64_t>(std::llround(us)));
  if (us < 1e6) return fmt::format("{:.1f}ms", us / 1000);
  return fmt::format("{:.2f}s", us / 1e6);
}

std::string fmt_count(uint64_t n) {
  std::string s = std::to_string(n), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (i && (s.size() - i) % 3 == 0) out += ',';
    out += s[i];
  }
  return out;
}

std::string iso(uint64_t us) {
  TimestampFormatter f;
  std::string s;
  f.append(s, us);
  return s;
}

} // namespace

uint64_t percentile_nearest_rank(std::vector<uint32_t>& v, double p) {
  if (v.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p * double(v.size())));
  if (rank < 1) rank = 1;
  if (rank > v.size()) rank = v.size();
  std::nth_element(v.begin(), v.begin() + static_cast<long>(rank - 1), v.end());
  return v[rank - 1];
}

std::string key_prefix(std::string_view key) {
  size_t colon = key.find(':');
  if (colon == std::string_view::npos) return std::string(key);
  return std::string(key.substr(0, colon + 1)) + "*";
}

void TrafficAnalyzer::add_stream(std::istream& in) {
  std::string line;
  while (std::getline(in, line)) add_line(line);
}

void TrafficAnalyzer::add_line(std::string_view line) {
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
  if (line.empty()) return;
  ++lines_;
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  uint64_t ts = 0;
  if (!j.is_object() || !parse_timestamp(str_field(j, "ts"), ts)) {
    ++bad_lines_;
    return;
  }
  first_us_ = std::min(first_us_, ts);
  last_us_ = std::max(last_us_, ts);
  std::string ev = str_field(j, "event");
  if (!ev.empty()) add_event(j, ev, ts);
  else if (j.contains("cmd")) add_request(j, ts);
  else ++bad_lines_;
}

void TrafficAnalyzer::add_event(const nlohmann::json& j, const std::string& ev, uint64_t ts) {
  ++events_;
  ++event_counts_[ev];
  if (ev == "toxic_added" || ev == "toxic_removed" || ev == "toxic_updated") {
    nlohmann::json t = j.value("toxic", nlohmann::json::object());
    toxic_events_.push_back({{"ts", iso(ts)},
                             {"ts_us", ts},
                             {"event", ev},
                             {"proxy", str_field(j, "proxy")},
                             {"toxic", t.is_object() ? str_field(t, "name") : ""},
                             {"type", t.is_object() ? str_field(t, "type") : ""}});
  }
  // Faults without a toxic open and close windows the same way: a disabled proxy, and an
  // accept mode other than normal.
  auto window_event = [&](const char* e, const std::string& proxy, const std::string& label) {
    toxic_events_.push_back({{"ts", iso(ts)}, {"ts_us", ts}, {"event", e}, {"proxy", proxy},
                             {"toxic", label}, {"type", label}});
  };
  if (ev == "proxy_disabled") window_event("toxic_added", str_field(j, "proxy"), "disabled");
  if (ev == "proxy_enabled") window_event("toxic_removed", str_field(j, "proxy"), "disabled");
  if (ev == "accept_mode") {
    std::string proxy = str_field(j, "proxy"), mode = str_field(j, "mode");
    if (auto it = accept_open_.find(proxy); it != accept_open_.end()) {
      window_event("toxic_removed", proxy, it->second);
      accept_open_.erase(it);
    }
    if (!mode.empty() && mode != "normal") {
      accept_open_[proxy] = "accept=" + mode;
      window_event("toxic_added", proxy, accept_open_[proxy]);
    }
  }
  if (j.contains("session") && j["session"].is_number())
    sessions_[{str_field(j, "proxy"), uint_field(j, "session")}] = true;
}

void TrafficAnalyzer::add_request(const nlohmann::json& j, uint64_t ts) {
  ++requests_;
  std::string cmd = str_field(j, "cmd");
  uint64_t lat = uint_field(j, "latency_us");
  uint32_t lat32 = static_cast<uint32_t>(std::min<uint64_t>(lat, UINT32_MAX));
  Command& c = commands_[cmd];
  ++c.calls;
  c.latencies.push_back(lat32);
  all_latencies_.push_back(lat32);
  uint64_t bin = uint_field(j, "bytes_in"), bout = uint_field(j, "bytes_out");
  c.bytes_in += bin;
  c.bytes_out += bout;
  bytes_in_ += bin;
  bytes_out_ += bout;
  Second& sec = seconds_[ts / 1000000];
  ++sec.requests;
  sec.latencies.push_back(lat32);

  const nlohmann::json& reply = j.contains("reply") ? j["reply"] : nlohmann::json();
  std::string rtype = reply.is_object() ? str_field(reply, "type") : "";
  if (rtype == "error" || rtype == "blob_error") {
    ++errors_;
    ++c.errors;
    ++sec.errors;
    std::string text = str_field(reply, "text");
    std::string prefix = text.substr(0, text.find(' '));
    ++error_types_[prefix.empty() ? "(empty)" : prefix];
  }
  std::string fault;
  if (j.contains("fault") && j["fault"].is_string()) fault = j["fault"].get<std::string>();
  if (!fault.empty()) {
    ++faults_;
    ++c.faults;
    ++sec.faults;
    ++fault_counts_[fault];
    if (std::find(sec.toxics.begin(), sec.toxics.end(), fault) == sec.toxics.end())
      sec.toxics.push_back(fault);
  }
  // What became of the reply (absent in logs of older versions; null: not followed).
  if (auto d = j.find("delivery"); d != j.end()) {
    if (d->is_object()) {
      ++followed_;
      std::string by = d->contains("by") && (*d)["by"].is_string() ? (*d)["by"].get<std::string>()
                                                                   : std::string();
      if (d->value("delivered", false)) {
        ++delivered_;
        delivered_us_.push_back(
            static_cast<uint32_t>(std::min<uint64_t>(uint_field(*d, "delivered_us"), UINT32_MAX)));
      } else {
        (str_field(*d, "client") == "gone" ? gone_ : cut_)++;
        ++undelivered_by_[by.empty() ? "(unknown)" : by];
      }
    } else if (d->is_null()) {
      ++unfollowed_;
    }
  }
  std::string key = str_field(j, "key");
  if (!key.empty()) ++prefixes_[key_prefix(key)];
  sessions_[{str_field(j, "proxy"), uint_field(j, "session")}] = true;

  // The slowest requests: a min-heap of the kKeepSlowest largest latencies.
  auto cmp = [](const Slow& a, const Slow& b) { return a.latency_us > b.latency_us; };
  if (slowest_.size() < kKeepSlowest || lat > slowest_.front().latency_us) {
    Slow s;
    s.latency_us = lat;
    s.ts_us = ts;
    s.cmd = cmd;
    if (j.contains("args") && j["args"].is_array())
      for (const auto& a : j["args"]) {
        if (!s.args.empty()) s.args += ' ';
        s.args += "\"" + (a.is_string() ? a.get<std::string>() : a.dump()) + "\"";
      }
    s.reply = reply_brief(reply);
    s.fault = fault;
    s.proxy = str_field(j, "proxy");
    s.session = uint_field(j, "session");
    if (slowest_.size() >= kKeepSlowest) {
      std::pop_heap(slowest_.begin(), slowest_.end(), cmp);
      slowest_.pop_back();
    }
    slowest_.push_back(std::move(s));
    std::push_heap(slowest_.begin(), slowest_.end(), cmp);
  }
}

nlohmann::json TrafficAnalyzer::report(size_t top) const {
  using nlohmann::json;
  const bool any = first_us_ != UINT64_MAX;
  const double duration_s = any ? double(last_us_ - first_us_) / 1e6 : 0.0;
  std::vector<uint32_t> all = all_latencies_;
  json totals = {{"lines", lines_},
                 {"unreadable_lines", bad_lines_},
                 {"requests", requests_},
                 {"events", events_},
                 {"sessions", sessions_.size()},
                 {"errors", errors_},
                 {"faulted", faults_},
                 {"bytes_in", bytes_in_},
                 {"bytes_out", bytes_out_},
                 {"first", any ? json(iso(first_us_)) : json()},
                 {"last", any ? json(iso(last_us_)) : json()},
                 {"duration_s", std::round(duration_s * 1e6) / 1e6},
                 {"requests_per_s",
                  duration_s > 0 ? std::round(double(requests_) / duration_s * 10) / 10 : 0.0},
                 {"p50_us", percentile_nearest_rank(all, 0.50)},
                 {"p99_us", percentile_nearest_rank(all, 0.99)},
                 {"max_us", all.empty() ? 0 : *std::max_element(all.begin(), all.end())}};
  json events = json::object();
  for (const auto& [k, v] : event_counts_) events[k] = v;
  totals["events_by_type"] = std::move(events);

  json cmds = json::array();
  std::vector<std::pair<std::string, const Command*>> order;
  for (const auto& [name, c] : commands_) order.emplace_back(name, &c);
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.second->calls > b.second->calls; });
  for (const auto& [name, c] : order) {
    std::vector<uint32_t> l = c->latencies;
    uint64_t sum = 0;
    for (uint32_t x : l) sum += x;
    cmds.push_back({{"cmd", name},
                    {"calls", c->calls},
                    {"errors", c->errors},
                    {"faulted", c->faults},
                    {"p50_us", percentile_nearest_rank(l, 0.50)},
                    {"p90_us", percentile_nearest_rank(l, 0.90)},
                    {"p99_us", percentile_nearest_rank(l, 0.99)},
                    {"max_us", l.empty() ? 0 : *std::max_element(l.begin(), l.end())},
                    {"mean_us", l.empty() ? 0.0 : std::round(double(sum) / double(l.size()) * 10) / 10},
                    {"bytes_in", c->bytes_in},
                    {"bytes_out", c->bytes_out}});
  }

  std::vector<Slow> slow = slowest_;
  std::sort(slow.begin(), slow.end(), [](const Slow& a, const Slow& b) {
    return a.latency_us != b.latency_us ? a.latency_us > b.latency_us : a.ts_us < b.ts_us;
  });
  if (slow.size() > top) slow.resize(top);
  json slowest = json::array();
  for (const auto& s : slow)
    slowest.push_back({{"ts", iso(s.ts_us)},
                       {"proxy", s.proxy},
                       {"session", s.session},
                       {"cmd", s.cmd},
                       {"args", s.args},
                       {"reply", s.reply},
                       {"latency_us", s.latency_us},
                       {"fault", s.fault.empty() ? json() : json(s.fault)}});

  auto ranked = [&](const std::map<std::string, uint64_t>& m, const char* key, size_t limit) {
    std::vector<std::pair<std::string, uint64_t>> v(m.begin(), m.end());
    std::stable_sort(v.begin(), v.end(),
                     [](const auto& a, const auto& b) { return a.second > b.second; });
    if (v.size() > limit) v.resize(limit);
    json out = json::array();
    for (const auto& [k, n] : v) out.push_back({{key, k}, {"count", n}});
    return out;
  };

  // Fault windows: from the toxic events, plus every second in which a request was faulted.
  struct Window {
    uint64_t from, to;
    std::string proxy, toxic;
  };
  std::vector<Window> windows;
  std::map<std::pair<std::string, std::string>, uint64_t> open;
  for (const auto& e : toxic_events_) {
    auto key = std::make_pair(e["proxy"].get<std::string>(), e["toxic"].get<std::string>());
    uint64_t t = e["ts_us"].get<uint64_t>();
    std::string ev = e["event"].get<std::string>();
    if (ev == "toxic_added") open.emplace(key, t);
    else if (ev == "toxic_removed") {
      auto it = open.find(key);
      windows.push_back({it != open.end() ? it->second : first_us_, t, key.first, key.second});
      if (it != open.end()) open.erase(it);
    }
  }
  for (const auto& [key, t] : open) windows.push_back({t, last_us_, key.first, key.second});
  json fault_windows = json::array();
  for (const auto& w : windows)
    fault_windows.push_back({{"proxy", w.proxy},
                             {"toxic", w.toxic},
                             {"from", iso(w.from)},
                             {"to", iso(w.to)},
                             {"duration_s", double(w.to - w.from) / 1e6}});

  json rows = json::array();
  if (any) {
    for (uint64_t s = first_us_ / 1000000; s <= last_us_ / 1000000; ++s) {
      auto it = seconds_.find(s);
      Second empty;
      const Second& sec = it == seconds_.end() ? empty : it->second;
      std::vector<uint32_t> l = sec.latencies;
      std::vector<std::string> toxics = sec.toxics;
      for (const auto& w : windows)
        if (w.from < (s + 1) * 1000000 && w.to >= s * 1000000 &&
            std::find(toxics.begin(), toxics.end(), w.toxic) == toxics.end())
          toxics.push_back(w.toxic);
      rows.push_back({{"t", iso(s * 1000000)},
                      {"requests", sec.requests},
                      {"errors", sec.errors},
                      {"faulted", sec.faults},
                      {"p99_us", percentile_nearest_rank(l, 0.99)},
                      {"faults", toxics}});
    }
  }
  // What became of the replies, for the records that say (the traffic log follows deliveries).
  std::vector<uint32_t> dus = delivered_us_;
  json delivery = {{"followed", followed_},
                   {"unfollowed", unfollowed_},
                   {"delivered", delivered_},
                   {"not_delivered", gone_ + cut_},
                   {"client_gone", gone_},
                   {"cut", cut_},
                   {"p50_us", percentile_nearest_rank(dus, 0.50)},
                   {"p99_us", percentile_nearest_rank(dus, 0.99)},
                   {"max_us", dus.empty() ? 0u : *std::max_element(dus.begin(), dus.end())},
                   {"not_delivered_by", ranked(undelivered_by_, "by", top)}};
  return {{"totals", std::move(totals)},
          {"commands", std::move(cmds)},
          {"slowest", std::move(slowest)},
          {"key_prefixes", ranked(prefixes_, "prefix", top)},
          {"errors", ranked(error_types_, "error", top)},
          {"faults", ranked(fault_counts_, "toxic", top)},
          {"fault_windows", std::move(fault_windows)},
          {"delivery", std::move(delivery)},
          {"timeline", std::move(rows)}};
}

std::string render_report(const nlohmann::json& r, bool color, std::string_view source) {
  const char* bold = color ? "\x1b[1m" : "";
  const char* dim = color ? "\x1b[2m" : "";
  const char* red = color ? "\x1b[31m" : "";
  const char* yellow = color ? "\x1b[33m" : "";
  const char* cyan = color ? "\x1b[36m" : "";
  const char* reset = color ? "\x1b[0m" : "";
  const auto& t = r["totals"];
  std::string o;
  auto u = [](const nlohmann::json& j, const char* k) { return j[k].get<uint64_t>(); };
  uint64_t req = u(t, "requests"), err = u(t, "errors");
  o += fmt::format("{}faultline inspect{} {}\n", bold, reset, source);
  if (t["first"].is_null()) {
    o += "  no records\n";
    return o;
  }
  o += fmt::format("  {} requests in {:.3f} s ({} req/s), {} sessions, {}{} errors{} ({:.2f}%), "
                   "{}{} faulted{}\n",
                   fmt_count(req), t["duration_s"].get<double>(),
                   fmt_count(static_cast<uint64_t>(t["requests_per_s"].get<double>())),
                   fmt_count(u(t, "sessions")), err ? red : "", fmt_count(err), reset,
                   req ? 100.0 * double(err) / double(req) : 0.0, u(t, "faulted") ? yellow : "",
                   fmt_count(u(t, "faulted")), reset);
  o += fmt::format("  latency p50 {}, p99 {}, max {}; {} in, {} out\n",
                   fmt_us(double(u(t, "p50_us"))), fmt_us(double(u(t, "p99_us"))),
                   fmt_us(double(u(t, "max_us"))), fmt_count(u(t, "bytes_in")) + " B",
                   fmt_count(u(t, "bytes_out")) + " B");
  o += fmt::format("  {}{} .. {}; {} events", dim, t["first"].get<std::string>(),
                   t["last"].get<std::string>(), fmt_count(u(t, "events")));
  for (const auto& [k, v] : t["events_by_type"].items()) o += fmt::format(" {}={}", k, v.dump());
  if (u(t, "unreadable_lines")) o += fmt::format("; {} unreadable lines", u(t, "unreadable_lines"));
  o += fmt::format("{}\n", reset);

  if (r.contains("delivery") && u(r["delivery"], "followed")) {
    const auto& d = r["delivery"];
    o += fmt::format("  delivered to the client: {} of {} followed, p50 {}, p99 {}, max {}",
                     fmt_count(u(d, "delivered")), fmt_count(u(d, "followed")),
                     fmt_us(double(u(d, "p50_us"))), fmt_us(double(u(d, "p99_us"))),
                     fmt_us(double(u(d, "max_us"))));
    if (u(d, "not_delivered")) {
      o += fmt::format("; {}not delivered {}{} (client gone {}, cut {}:", red,
                       fmt_count(u(d, "not_delivered")), reset, fmt_count(u(d, "client_gone")),
                       fmt_count(u(d, "cut")));
      for (const auto& b : d["not_delivered_by"])
        o += fmt::format(" {}={}", b["by"].get<std::string>(), u(b, "count"));
      o += ')';
    }
    o += '\n';
  }
  o += fmt::format("\n{}Commands{}\n", bold, reset);
  o += fmt::format("  {:<20} {:>10} {:>8} {:>9} {:>9} {:>9}\n", "command", "calls", "errors",
                   "p50", "p99", "max");
  for (const auto& c : r["commands"]) {
    uint64_t e = u(c, "errors");
    o += fmt::format("  {}{:<20}{} {:>10} {}{:>8}{} {:>9} {:>9} {:>9}\n", cyan,
                     c["cmd"].get<std::string>(), reset, fmt_count(u(c, "calls")), e ? red : "",
                     fmt_count(e), e ? reset : "", fmt_us(double(u(c, "p50_us"))),
                     fmt_us(double(u(c, "p99_us"))), fmt_us(double(u(c, "max_us"))));
  }

  if (!r["slowest"].empty()) {
    o += fmt::format("\n{}Slowest{}\n", bold, reset);
    for (const auto& s : r["slowest"]) {
      std::string ts = s["ts"].get<std::string>();
      std::string line = fmt::format("  {:>9}  {}{}{} {}", fmt_us(double(u(s, "latency_us"))),
                                     cyan, s["cmd"].get<std::string>(), reset,
                                     s["args"].get<std::string>());
      if (line.size() > 90) line = line.substr(0, 87) + "...";
      o += line + fmt::format(" -> {}", s["reply"].get<std::string>());
      if (s["fault"].is_string()) o += fmt::format(" {}[{}]{}", yellow, s["fault"].get<std::string>(), reset);
      o += fmt::format("  {}{} #{}{}\n", dim, ts.substr(11, 15), u(s, "session"), reset);
    }
  }
  auto table = [&](const char* title, const nlohmann::json& rows, const char* key,
                   const char* colour) {
    if (rows.empty()) return;
    o += fmt::format("\n{}{}{}\n", bold, title, reset);
    for (const auto& row : rows) {
      uint64_t n = u(row, "count");
      o += fmt::format("  {}{:<30}{} {:>10}", colour, row[key].get<std::string>(), reset,
                       fmt_count(n));
      if (req) o += fmt::format(" {:>6.2f}%", 100.0 * double(n) / double(req));
      o += '\n';
    }
  };
  table("Key prefixes", r["key_prefixes"], "prefix", "");
  table("Errors", r["errors"], "error", red);
  table("Faults injected", r["faults"], "toxic", yellow);
  if (!r["fault_windows"].empty()) {
    o += fmt::format("\n{}Fault windows{}\n", bold, reset);
    for (const auto& w : r["fault_windows"])
      o += fmt::format("  {}{}{} on {}: {} .. {} ({:.3f} s)\n", yellow,
                       w["toxic"].get<std::string>(), reset, w["proxy"].get<std::string>(),
                       w["from"].get<std::string>().substr(11, 15),
                       w["to"].get<std::string>().substr(11, 15), w["duration_s"].get<double>());
  }

  // The timeline: one row per second (merged when the log spans more than 120 s).
  const auto& rows = r["timeline"];
  if (!rows.empty()) {
    size_t per = (rows.size() + 119) / 120;
    struct Row {
      std::string t;
      uint64_t req = 0, err = 0, p99 = 0;
      std::vector<std::string> faults;
    };
    std::vector<Row> merged;
    for (size_t i = 0; i < rows.size(); i += per) {
      Row m;
      m.t = rows[i]["t"].get<std::string>().substr(11, 8);
      for (size_t k = i; k < std::min(rows.size(), i + per); ++k) {
        m.req += u(rows[k], "requests");
        m.err += u(rows[k], "errors");
        m.p99 = std::max(m.p99, u(rows[k], "p99_us"));
        for (const auto& f : rows[k]["faults"]) {
          std::string name = f.get<std::string>();
          if (std::find(m.faults.begin(), m.faults.end(), name) == m.faults.end())
            m.faults.push_back(name);
        }
      }
      merged.push_back(std::move(m));
    }
    uint64_t peak = 1;
    for (const auto& m : merged) peak = std::max(peak, m.req);
    constexpr int kWidth = 40;
    static const char* kEighths[] = {"", "▏", "▎", "▍", "▌", "▋", "▊", "▉"};
    o += fmt::format("\n{}Timeline{} ({} s per row; bar = requests, peak {}; ! = fault active)\n",
                     bold, reset, per, fmt_count(peak));
    o += fmt::format("  {:<8}   {:<40} {:>10} {:>8} {:>9}\n", "time", "requests", "req/s",
                     "errors", "p99");
    for (const auto& m : merged) {
      bool fault = !m.faults.empty();
      int eighths = static_cast<int>(std::llround(double(m.req) * kWidth * 8 / double(peak)));
      std::string bar;
      for (int k = 0; k < eighths / 8; ++k) bar += "█";
      bar += kEighths[eighths % 8];
      int cells = eighths / 8 + (eighths % 8 ? 1 : 0);
      bar += std::string(static_cast<size_t>(kWidth - cells), ' ');
      o += fmt::format("  {} {}{}{} {}{}{} {:>10} {}{:>8}{} {:>9}", m.t, fault ? yellow : "",
                       fault ? "!" : " ", reset, m.err ? red : (fault ? yellow : cyan), bar, reset,
                       fmt_count(m.req / per), m.err ? red : "", fmt_count(m.err), m.err ? reset : "",
                       fmt_us(double(m.p99)));
      if (fault) {
        std::string names;
        for (const auto& f : m.faults) names += (names.empty() ? "" : ",") + f;
        o += fmt::format("  {}{}{}", yellow, names, reset);
      }
      o += '\n';
    }
  }
  return o;
}

int run_inspect(int argc, char** argv) {
  cxxopts::Options opts("faultline inspect",
                        "Summarise a traffic log (JSON Lines, as written by --log FILE).\n\n"
                        "  faultline inspect traffic.jsonl\n  faultline inspect - < traffic.jsonl"
                        "\n  faultline inspect --json traffic.jsonl   # the same, as JSON for CI\n");
  // clang-format off
  opts.add_options()
    ("json", "print the report as JSON")
    ("top", "rows in the slowest, key prefix, error and fault lists",
       cxxopts::value<size_t>()->default_value("10"))
    ("color", "colours: auto, always, never", cxxopts::value<std::string>()->default_value("auto"))
    ("file", "the log (- or none: stdin)", cxxopts::value<std::string>())
    ("h,help", "show this help");
  // clang-format on
  opts.parse_positional({"file"});
  opts.positional_help("[FILE]");
  cxxopts::ParseResult r;
  try {
    r = opts.parse(argc, argv);
  } catch (const std::exception& e) {
    fmt::print(stderr, "faultline inspect: {}\nTry 'faultline inspect --help'.\n", e.what());
    return 2;
  }
  if (r.count("help")) {
    fmt::print("{}", opts.help());
    return 0;
  }
  std::string file = r.count("file") ? r["file"].as<std::string>() : "-";
  std::string color = r["color"].as<std::string>();
  if (color != "auto" && color != "always" && color != "never") {
    fmt::print(stderr, "faultline inspect: --color must be auto, always or never\n");
    return 2;
  }
  TrafficAnalyzer a;
  if (file == "-") {
    std::ios::sync_with_stdio(false);
    a.add_stream(std::cin);
  } else {
    std::ifstream in(file);
    if (!in) {
      fmt::print(stderr, "faultline inspect: cannot read {}: {}\n", file, std::strerror(errno));
      return 1;
    }
    a.add_stream(in);
  }
  nlohmann::json rep = a.report(r["top"].as<size_t>());
  if (r.count("json")) {
    fmt::print("{}\n", rep.dump(2));
    return 0;
  }
  bool use_color = color == "always" || (color == "auto" && uv::platform::is_terminal(1));
  fmt::print("{}", render_report(rep, use_color, file == "-" ? "(stdin)" : file));
  return 0;
}

} // namespace faultline::observe
