#include "observe/inspect.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <random>
#include <sstream>

#include "observe/record.h"

namespace faultline::observe {
namespace {

// The reference: nearest rank on a sorted copy.
uint64_t reference_percentile(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  size_t rank = static_cast<size_t>(std::ceil(p * double(v.size())));
  return v[std::max<size_t>(rank, 1) - 1];
}

TEST(Inspect, ExactTotalsAndPercentilesOfAGeneratedLog) {
  std::mt19937_64 rng(42);
  const uint64_t t0 = 1795929000000000ULL; // 2026-11-29T05:10:00Z
  const char* cmds[] = {"GET", "SET", "HGETALL", "CLIENT SETNAME"};
  std::map<std::string, std::vector<uint64_t>> lat;
  std::map<std::string, uint64_t> errors_by_cmd, prefixes;
  std::vector<uint64_t> all;
  std::map<uint64_t, uint64_t> per_second;
  uint64_t errors = 0, faults = 0;
  std::ostringstream log;
  TimestampFormatter tf;
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    uint64_t ts = t0 + static_cast<uint64_t>(i) * 250; // 5 s of traffic
    std::string cmd = cmds[rng() % 4];
    uint64_t l = 10 + rng() % 1000 + (rng() % 100 == 0 ? 50000 : 0);
    bool err = rng() % 50 == 0;
    bool fault = err && rng() % 2 == 0;
    std::string key = (rng() % 3 ? "user:" : "session:") + std::to_string(rng() % 100);
    std::string ts_s;
    tf.append(ts_s, ts);
    log << R"({"ts":")" << ts_s << R"(","proxy":"redis","session":)" << (i % 7 + 1)
        << R"(,"client":"127.0.0.1:1","db":0,"cmd":")" << cmd << R"(","args":[")" << key
        << R"("],"key":")" << key << R"(","reply":)"
        << (err ? R"({"type":"error","text":"LOADING Redis is loading"})"
                : R"({"type":"simple","text":"OK"})")
        << R"(,"latency_us":)" << l << R"(,"bytes_in":20,"bytes_out":5,"fault":)"
        << (fault ? "\"loading\"" : "null") << "}\n";
    if (i == 100) log << "this line is not JSON\n";
    if (i == 200)
      log << R"({"ts":")" << ts_s
          << R"(","proxy":"redis","session":null,"client":null,"event":"toxic_added","toxic":{"name":"loading","type":"resp_error"}})"
          << "\n";
    lat[cmd].push_back(l);
    all.push_back(l);
    ++per_second[ts / 1000000];
    ++prefixes[key.substr(0, key.find(':') + 1) + "*"];
    if (err) {
      ++errors;
      ++errors_by_cmd[cmd];
    }
    faults += fault;
  }
  TrafficAnalyzer a;
  std::istringstream in(log.str());
  a.add_stream(in);
  auto r = a.report(5);
  const auto& t = r["totals"];
  EXPECT_EQ(t["requests"], n);
  EXPECT_EQ(t["errors"], errors);
  EXPECT_EQ(t["faulted"], faults);
  EXPECT_EQ(t["unreadable_lines"], 1);
  EXPECT_EQ(t["events"], 1);
  EXPECT_EQ(t["sessions"], 7);
  EXPECT_DOUBLE_EQ(t["duration_s"].get<double>(), double(n - 1) * 250 / 1e6);
  EXPECT_EQ(t["p50_us"], reference_percentile(all, 0.5));
  EXPECT_EQ(t["p99_us"], reference_percentile(all, 0.99));
  EXPECT_EQ(t["max_us"], *std::max_element(all.begin(), all.end()));
  ASSERT_EQ(r["commands"].size(), 4u);
  for (const auto& c : r["commands"]) {
    const auto& v = lat[c["cmd"].get<std::string>()];
    EXPECT_EQ(c["calls"], v.size());
    EXPECT_EQ(c["errors"], errors_by_cmd[c["cmd"].get<std::string>()]);
    EXPECT_EQ(c["p50_us"], reference_percentile(v, 0.5));
    EXPECT_EQ(c["p90_us"], reference_percentile(v, 0.9));
    EXPECT_EQ(c["p99_us"], reference_percentile(v, 0.99));
    EXPECT_EQ(c["max_us"], *std::max_element(v.begin(), v.end()));
  }
  // The slowest list is sorted and holds the largest latencies.
  std::vector<uint64_t> sorted = all;
  std::sort(sorted.rbegin(), sorted.rend());
  ASSERT_EQ(r["slowest"].size(), 5u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(r["slowest"][i]["latency_us"], sorted[i]);
  EXPECT_EQ(r["key_prefixes"][0]["prefix"], "user:*");
  EXPECT_EQ(r["key_prefixes"][0]["count"], prefixes["user:*"]);
  EXPECT_EQ(r["errors"][0]["error"], "LOADING");
  EXPECT_EQ(r["errors"][0]["count"], errors);
  EXPECT_EQ(r["faults"][0]["toxic"], "loading");
  EXPECT_EQ(r["faults"][0]["count"], faults);
  // One timeline row per second; the fault window (never removed) marks every row after it.
  ASSERT_EQ(r["timeline"].size(), per_second.size());
  size_t i = 0;
  for (const auto& [sec, count] : per_second) EXPECT_EQ(r["timeline"][i++]["requests"], count);
  EXPECT_FALSE(r["timeline"].back()["faults"].empty());
  ASSERT_EQ(r["fault_windows"].size(), 1u);

  std::string text = render_report(r, false, "gen.jsonl");
  EXPECT_NE(text.find("20,000 requests"), std::string::npos) << text;
  EXPECT_NE(text.find("Timeline"), std::string::npos);
  EXPECT_NE(text.find("LOADING"), std::string::npos);
}

TEST(Inspect, EmptyInput) {
  TrafficAnalyzer a;
  auto r = a.report();
  EXPECT_EQ(r["totals"]["requests"], 0);
  EXPECT_NE(render_report(r, false, "x").find("no records"), std::string::npos);
}

TEST(Inspect, KeyPrefix) {
  EXPECT_EQ(key_prefix("user:1:name"), "user:*");
  EXPECT_EQ(key_prefix("plain"), "plain");
}

TEST(Inspect, DeliverySummarisesWhatTheClientsGot) {
  auto rec = [](std::string_view delivery) {
    return std::string(R"({"ts":"2026-12-06T22:20:31.518722Z","proxy":"redis","session":1,)"
                       R"("client":"127.0.0.1:1","db":0,"cmd":"GET","args":["k"],"key":"k",)"
                       R"("reply":{"type":"null"},"latency_us":50,"bytes_in":20,"bytes_out":5,)"
                       R"("fault":null)") +
           (delivery.empty() ? "" : ",\"delivery\":" + std::string(delivery)) + "}";
  };
  TrafficAnalyzer a;
  a.add_line(rec(R"({"delivered":true,"delivered_us":100})"));
  a.add_line(rec(R"({"delivered":true,"delivered_us":500000,"by":"slow"})"));
  a.add_line(rec(R"({"delivered":false,"client":"gone","by":"slow"})"));
  a.add_line(rec(R"({"delivered":false,"client":"cut","by":"rst"})"));
  a.add_line(rec("null"));
  a.add_line(rec(""));  // a log of an older version
  auto r = a.report();
  const auto& d = r["delivery"];
  EXPECT_EQ(r["totals"]["requests"], 6);
  EXPECT_EQ(d["followed"], 4);
  EXPECT_EQ(d["unfollowed"], 1);
  EXPECT_EQ(d["delivered"], 2);
  EXPECT_EQ(d["not_delivered"], 2);
  EXPECT_EQ(d["client_gone"], 1);
  EXPECT_EQ(d["cut"], 1);
  EXPECT_EQ(d["max_us"], 500000);
  EXPECT_EQ(d["p50_us"], 100);
  ASSERT_EQ(d["not_delivered_by"].size(), 2u);
  std::string text = render_report(r, false, "d.jsonl");
  EXPECT_NE(text.find("delivered to the client: 2 of 4 followed"), std::string::npos) << text;
  EXPECT_NE(text.find("not delivered 2 (client gone 1, cut 1: rst=1 slow=1)"), std::string::npos)
      << text;
}

} // namespace
} // namespace faultline::observe
