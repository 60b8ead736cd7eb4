// Chaos profiles end to end: every shipped profile runs to its end against a real redis-server
// while a client checks that what the profile promises happens, at the right times. Timelines
// run faster (--profile-speed) to keep the suite short; toxic settings are not scaled, so
// latencies stay real. Times are measured from the profile's own clock (its elapsed_ms on the
// API), with tolerances for scheduling.

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "support/harness.h"

using namespace fltest;
using faultline::control::HttpClient;
using faultline::control::HttpResult;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

std::string profile_path(const std::string& name) {
  return std::string(FAULTLINE_SOURCE_DIR) + "/profiles/" + name + ".toml";
}

// A faultline running one profile in front of its own redis-server.
struct ProfileRun {
  Redis redis;
  Faultline fl;
  uint16_t port = 0, api = 0;
  Clock::time_point t0; // the profile's start
  double slack = 0;     // seconds: how far t0 can be off (half the report's round trip)
  std::unique_ptr<HttpClient> http;
  std::string name;

  // Starts faultline with --profile; t0 comes from the profile's elapsed time on the API.
  void start(const std::string& profile, double speed, std::vector<std::string> extra = {},
             bool with_profile = true) {
    name = profile;
    ASSERT_TRUE(redis.start());
    std::vector<std::string> args = {"--listen", "127.0.0.1:0", "--upstream",
                                     "127.0.0.1:" + std::to_string(redis.port()), "--api",
                                     "127.0.0.1:0"};
    if (with_profile) {
      args.insert(args.end(), {"--profile", profile_path(profile), "--profile-speed",
                               std::to_string(speed)});
    }
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(fl.start_args(args)) << fl.process().log();
    port = fl.port();
    api = fl.api_port();
    http = std::make_unique<HttpClient>("127.0.0.1", api);
    if (!with_profile) return;
    auto before = Clock::now();
    json r = report();
    auto after = Clock::now();
    ASSERT_TRUE(r.contains("elapsed_ms")) << r.dump();
    t0 = before + (after - before) / 2 - std::chrono::milliseconds(r["elapsed_ms"].get<int64_t>());
    slack = std::chrono::duration<double>(after - before).count() / 2 + 0.002;
  }
  ~ProfileRun() {
    http.reset();
    if (fl.process().running()) fl.stop();
  }

  double t() const { return std::chrono::duration<double>(Clock::now() - t0).count(); }
  // True if what the test did up to now surely happened before profile time s: t() is off
  // from the profile's own clock by at most `slack`. Steps end late on a loaded machine (a
  // timer fires late), never early, so such a thing happened inside a step that ends at s.
  bool surely_before(double s) const { return t() + slack < s; }
  void sleep_until(double s) const {
    auto until = t0 + std::chrono::microseconds(static_cast<int64_t>(s * 1e6));
    std::this_thread::sleep_until(until);
  }
  json report() {
    HttpResult r = http->request("GET", "/profiles/" + name);
    return json::parse(r.body, nullptr, false);
  }
  bool wait_finished(Ms timeout = 10s) {
    return wait_until([&] { return report().value("state", "") == "finished"; }, timeout);
  }
  std::string redis_cmd(const std::vector<std::string>& args) {
    Conn c(redis.port());
    return call(c, args);
  }
};

// A PING on a fresh connection: true if PONG came back.
bool pings(uint16_t port) {
  Conn c;
  if (!c.connect(port)) return false;
  return call(c, {"PING"}) == "+PONG\r\n";
}

struct Sample {
  double t;
  bool ok;
};

// Runs of consecutive failed samples: [start, end) in profile time.
std::vector<std::pair<double, double>> down_windows(const std::vector<Sample>& s) {
  std::vector<std::pair<double, double>> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i].ok) continue;
    size_t j = i;
    while (j + 1 < s.size() && !s[j + 1].ok) ++j;
    out.push_back({s[i].t, j + 1 < s.size() ? s[j + 1].t : s[j].t});
    i = j;
  }
  return out;
}

std::vector<Sample> sample_pings(ProfileRun& run, double until_s) {
  std::vector<Sample> out;
  while (run.t() < until_s) {
    double t = run.t();
    out.push_back({t, pings(run.port)});
    std::this_thread::sleep_for(10ms);
  }
  return out;
}

} // namespace

// outage: refused for 10 s (1 s at 10x), then back. The outage ends late on a loaded machine
// (a timer fires late), never early: a sample is judged only if it surely fell inside the
// outage, or surely after its end plus `late`.
TEST(Profiles, Outage) {
  ProfileRun run;
  run.start("outage", 10);
  const double late = 0.4;
  auto samples = sample_pings(run, 1.0 + late + 0.3);
  for (const auto& s : samples) {
    if (s.t + run.slack < 1.0) {
      EXPECT_FALSE(s.ok) << "connect succeeded during the outage at " << s.t;
    }
    if (s.t - run.slack > 1.0 + late) {
      EXPECT_TRUE(s.ok) << "still down at " << s.t;
    }
  }
  auto w = down_windows(samples);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_GE(w[0].second + run.slack, 1.0) << "up again before the outage ended";
  EXPECT_LE(w[0].second - run.slack, 1.0 + late) << "still down well after the outage";
  ASSERT_TRUE(run.wait_finished());
  json r = run.report();
  ASSERT_EQ(r["steps"].size(), 1u);
  EXPECT_EQ(r["steps"][0]["label"], "redis down");
  EXPECT_GE(r["steps"][0]["ended_ms"].get<double>(), 990);
  EXPECT_LE(r["steps"][0]["ended_ms"].get<double>(), 1000 + late * 1000);
  EXPECT_EQ(run.fl.stop(), 0);
  std::string log = run.fl.process().log();
  EXPECT_NE(log.find("profile outage: finished after"), std::string::npos) << log;
  EXPECT_NE(log.find("redis down"), std::string::npos) << log;
}

// flapping: down 2 s, up 5 s, five times (35 s; 7 s at 5x: down 0.4 s every 1.4 s). Each
// window starts and ends late on a loaded machine (by up to `late`), never early.
TEST(Profiles, Flapping) {
  ProfileRun run;
  run.start("flapping", 5);
  const double late = 0.3;
  auto samples = sample_pings(run, 7.1);
  auto w = down_windows(samples);
  ASSERT_EQ(w.size(), 5u) << "down windows seen";
  for (size_t k = 0; k < w.size(); ++k) {
    const double start = 1.4 * static_cast<double>(k);
    EXPECT_GE(w[k].first + run.slack, start) << "window " << k;
    if (k > 0) { // (the first starts with the profile, before the first sample)
      EXPECT_LE(w[k].first - run.slack, start + late) << "window " << k;
    }
    EXPECT_GE(w[k].second + run.slack, start + 0.4) << "window " << k;
    EXPECT_LE(w[k].second - run.slack, start + 0.4 + late) << "window " << k;
  }
  ASSERT_TRUE(run.wait_finished());
  EXPECT_EQ(run.report()["steps"].size(), 5u);
  EXPECT_TRUE(pings(run.port));
}

// failover: LOADING for 3 s, READONLY on writes for 3 s, connections dropped, healthy (2.5x:
// 1.2 s, 1.2 s, the drop at 2.4 s). A step starts or ends late on a loaded machine (a timer
// fires late), never early: a round is judged against a step only if it surely happened
// inside it, and `late` later than its start.
TEST(Profiles, Failover) {
  ProfileRun run;
  run.start("failover", 2.5);
  const double late = 0.3;
  const std::string loading = "-LOADING Redis is loading the dataset in memory\r\n";
  const std::string readonly = "-READONLY You can't write against a read only replica.\r\n";
  ASSERT_EQ(run.redis_cmd({"SET", "k", "v"}), "+OK\r\n");
  Conn c(run.port);
  int loading_seen = 0, readonly_seen = 0, reads_ok = 0, ok_after = 0;
  double dropped_at = -1, lost_by = -1;
  while (run.t() < 3.5) {
    double t = run.t() - run.slack; // the round began after this profile time
    std::string get = call(c, {"GET", "k"});
    std::string set = call(c, {"SET", "k", "v"});
    double t2 = run.t() + run.slack; // and ended before this one
    bool lost = get.rfind("<", 0) == 0 || set.rfind("<", 0) == 0 || get.empty();
    if (lost) {
      if (dropped_at < 0) dropped_at = t, lost_by = t2;
      EXPECT_GT(t2, 2.4) << "connection lost early: GET " << get << " SET " << set;
      c = Conn(run.port);
      continue;
    }
    if (t2 < 1.2) {
      EXPECT_EQ(get, loading) << "at " << t;
      EXPECT_EQ(set, loading) << "at " << t;
      loading_seen += get == loading;
    } else if (t > 1.2 + late && t2 < 2.4) {
      EXPECT_EQ(get, "$1\r\nv\r\n") << "reads work on a replica, at " << t;
      EXPECT_EQ(set, readonly) << "at " << t;
      readonly_seen += set == readonly;
      reads_ok += get == "$1\r\nv\r\n";
    } else if (t > 2.4 + late) {
      EXPECT_EQ(set, "+OK\r\n") << "healthy again, at " << t;
      ok_after += set == "+OK\r\n";
    }
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GT(loading_seen, 5);
  EXPECT_GT(readonly_seen, 5);
  EXPECT_GT(reads_ok, 5);
  EXPECT_GT(ok_after, 5);
  EXPECT_GE(lost_by, 2.4) << "the connection is dropped at 6 s (2.4 s at 2.5x)";
  EXPECT_LE(dropped_at, 2.4 + late) << "the connection is dropped at 6 s (2.4 s at 2.5x)";
  ASSERT_TRUE(run.wait_finished());
  json r = run.report();
  ASSERT_EQ(r["steps"].size(), 3u);
  EXPECT_GT(r["steps"][0]["counts"]["commands_faulted"].get<int>(), 5) << r.dump(2);
  EXPECT_GT(r["steps"][1]["counts"]["commands_faulted"].get<int>(), 5) << r.dump(2);
  EXPECT_EQ(r["steps"][2]["counts"]["connections_dropped"], 1) << r.dump(2);
}

// slow-network: 100 ms ± 50 ms each way (30 s; 2 s at 15x).
TEST(Profiles, SlowNetwork) {
  ProfileRun run;
  run.start("slow-network", 15);
  Conn c(run.port);
  std::vector<double> rtts;
  while (run.t() < 1.7) {
    auto a = Clock::now();
    ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");
    if (!run.surely_before(2.0)) break; // a stall carried it past the steps' end
    rtts.push_back(std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  ASSERT_GE(rtts.size(), 4u);
  // Load only adds time: the lower bound holds for each round trip, the upper one (at most
  // 2 x 150 ms) for the median, which one stalled round trip does not move.
  for (double ms : rtts) EXPECT_GE(ms, 95) << "each way waits at least 100 - 50 ms";
  std::sort(rtts.begin(), rtts.end());
  EXPECT_GE(rtts[rtts.size() / 2], 140) << "median round trip about 200 ms";
  EXPECT_LE(rtts[rtts.size() / 2], 400) << "median round trip about 200 ms";
  ASSERT_TRUE(run.wait_finished());
  // The fastest of three: below the 2 x 50 ms the latency would still add.
  double after_ms = 1e9;
  for (int i = 0; i < 3; ++i) {
    auto a = Clock::now();
    ASSERT_EQ(call(c, {"PING"}), "+PONG\r\n");
    after_ms =
        std::min(after_ms, std::chrono::duration<double, std::milli>(Clock::now() - a).count());
  }
  EXPECT_LT(after_ms, 90) << "latency lifted at the end";
  json r = run.report();
  EXPECT_GT(r["steps"][1]["counts"]["bytes_delayed"].get<int>(), 0) << r.dump(2);
}

// blackhole: data stops and is dropped, connections held (10 s; 2 s at 5x); they work again after.
TEST(Profiles, Blackhole) {
  ProfileRun run;
  run.start("blackhole", 5);
  run.sleep_until(0.1);
  Conn held(run.port);
  ASSERT_TRUE(held.ok());
  ASSERT_TRUE(held.send_all(cmd({"PING"})));
  auto r = held.read_some(65536, 1500ms);
  EXPECT_FALSE(r.has_value()) << "a reply came through the black hole";
  EXPECT_EQ(held.last_errno(), ETIMEDOUT) << "the connection must stay open, silent";
  Conn late;
  ASSERT_TRUE(late.connect(run.port)) << "connects are accepted during the black hole";
  // The hole lifts at 2 s. What it swallowed is gone (timeout drops, as Toxiproxy's does: a
  // write the client gave up on never lands later); the connection itself carries on.
  EXPECT_FALSE(held.read_some(65536, 700ms).has_value()) << "the swallowed PING was answered";
  ASSERT_TRUE(run.wait_finished()); // the event, not a time: the hole has lifted
  ASSERT_TRUE(held.send_all(cmd({"ECHO", "after"})));
  auto reply = held.read_reply(5s);
  ASSERT_TRUE(reply.has_value());
  EXPECT_EQ(*reply, "$5\r\nafter\r\n");
  EXPECT_TRUE(pings(run.port));
}

namespace {

// Opens `n` connections one after the other, a PING on each; returns the (1-based) sequence
// numbers of those that were reset instead of answered.
std::set<int> reset_connections(ProfileRun& run, int n) {
  std::set<int> out;
  for (int i = 1; i <= n; ++i) {
    Conn c(run.port);
    EXPECT_TRUE(c.ok());
    if (call(c, {"PING"}) != "+PONG\r\n") out.insert(i);
  }
  return out;
}

} // namespace

// reset-storm: reset_peer on 30% of connections, seeded: the same connections every run.
TEST(Profiles, ResetStormIsRepeatable) {
  std::set<int> first, second;
  for (auto* out : {&first, &second}) {
    ProfileRun run;
    // 30 s at 6x: 5 s for 40 connections, room for a slow (ASan, loaded) machine.
    run.start("reset-storm", 6);
    *out = reset_connections(run, 40);
    EXPECT_TRUE(run.surely_before(5.0)) << "all connections inside the storm";
    ASSERT_TRUE(run.wait_finished());
    EXPECT_TRUE(pings(run.port)) << "no resets after the storm";
    json r = run.report();
    EXPECT_EQ(r["seed"], 42);
    EXPECT_EQ(r["steps"][0]["counts"]["new_connections"], 40) << r.dump(2);
  }
  EXPECT_EQ(first, second) << "same seed, same traffic: the same connections are reset";
  EXPECT_GE(first.size(), 4u) << "about 30% of 40";
  EXPECT_LE(first.size(), 20u) << "about 30% of 40";
}

// memory-pressure: OOM on writes, reads work (10 s; 2 s at 5x).
TEST(Profiles, MemoryPressure) {
  ProfileRun run;
  run.start("memory-pressure", 5);
  ASSERT_EQ(run.redis_cmd({"SET", "k", "v"}), "+OK\r\n");
  run.sleep_until(0.1);
  Conn c(run.port);
  int n = 0;
  while (run.t() < 1.85) {
    std::string set = call(c, {"SET", "k", "w"});
    std::string push = call(c, {"LPUSH", "l", "x"});
    std::string get = call(c, {"GET", "k"});
    std::string del = call(c, {"DEL", "nothing"});
    // Judged only if surely inside the step (2 s): a stall can carry a round past its end.
    if (!run.surely_before(2.0)) break;
    EXPECT_EQ(set, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
    EXPECT_EQ(push, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
    EXPECT_EQ(get, "$1\r\nv\r\n");
    EXPECT_EQ(del, ":0\r\n") << "DEL frees memory: allowed";
    ++n;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(n, 5);
  ASSERT_TRUE(run.wait_finished());
  EXPECT_EQ(call(c, {"SET", "k", "w"}), "+OK\r\n");
}

// cache-miss-storm: GET cache:* answers nil, other keys work (30 s; 2 s at 15x).
TEST(Profiles, CacheMissStorm) {
  ProfileRun run;
  run.start("cache-miss-storm", 15);
  ASSERT_EQ(run.redis_cmd({"SET", "cache:a", "1"}), "+OK\r\n");
  ASSERT_EQ(run.redis_cmd({"SET", "user:a", "2"}), "+OK\r\n");
  run.sleep_until(0.1);
  Conn c(run.port);
  int n = 0, missed = 0;
  while (run.t() < 1.85) {
    std::string miss = call(c, {"GET", "cache:a"});
    std::string hit = call(c, {"GET", "user:a"});
    std::string len = call(c, {"STRLEN", "cache:a"});
    missed += miss == "$-1\r\n"; // what the step counts, judged or not
    // Judged only if surely inside the step (2 s): a stall can carry a round past its end.
    if (!run.surely_before(2.0)) break;
    EXPECT_EQ(miss, "$-1\r\n");
    EXPECT_EQ(hit, "$1\r\n2\r\n");
    EXPECT_EQ(len, ":1\r\n") << "only GET misses";
    ++n;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(n, 5);
  ASSERT_TRUE(run.wait_finished());
  EXPECT_EQ(call(c, {"GET", "cache:a"}), "$1\r\n1\r\n");
  json r = run.report();
  EXPECT_EQ(r["steps"][0]["counts"]["commands_faulted"], missed) << r.dump(2);
}

// partial-pipeline: every 5th command errors; replies keep their order (30 s; 2 s at 15x).
TEST(Profiles, PartialPipeline) {
  ProfileRun run;
  run.start("partial-pipeline", 15);
  run.sleep_until(0.1);
  Conn c(run.port);
  std::string batch;
  for (int i = 0; i < 20; ++i) batch += cmd({"ECHO", std::to_string(i + 1)});
  ASSERT_TRUE(c.send_all(batch));
  for (int i = 1; i <= 20; ++i) {
    auto r = c.read_reply(2s);
    ASSERT_TRUE(r.has_value()) << "reply " << i;
    if (i % 5 == 0) {
      EXPECT_EQ(*r, "-ERR faultline: injected failure\r\n") << "reply " << i;
    } else {
      std::string n = std::to_string(i);
      EXPECT_EQ(*r, "$" + std::to_string(n.size()) + "\r\n" + n + "\r\n") << "reply " << i;
    }
  }
  ASSERT_TRUE(run.wait_finished());
  ASSERT_TRUE(c.send_all(batch));
  for (int i = 1; i <= 20; ++i) {
    auto r = c.read_reply(2s);
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->front(), '$') << "no errors after the profile, reply " << i;
  }
}

// smoke: no faults; --exit-after-profile exits 0 at the end with a summary.
TEST(Profiles, SmokeExitsAfterTheProfile) {
  ProfileRun run;
  run.start("smoke", 10, {"--exit-after-profile"});
  Conn c(run.port);
  int n = 0;
  while (run.t() < 0.9) {
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    ++n;
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GT(n, 5);
  auto st = run.fl.process().wait(3s);
  ASSERT_TRUE(st.has_value()) << "still running after the profile";
  EXPECT_EQ(*st, 0);
  // Not before the timeline's end (1 s); later on a loaded machine.
  EXPECT_GE(run.t() + run.slack, 1.0);
  EXPECT_LT(run.t(), 4.0);
  std::string log = run.fl.process().log();
  EXPECT_NE(log.find("profile smoke: finished after 1."), std::string::npos) << log;
  EXPECT_NE(log.find("profile ended: stopping"), std::string::npos) << log;
}

// ---- The command line ----

TEST(ProfileCli, CheckValidatesEveryShippedProfile) {
  int status = -1;
  std::string files;
  for (const char* p : {"outage", "flapping", "failover", "slow-network", "blackhole",
                        "reset-storm", "memory-pressure", "cache-miss-storm", "partial-pipeline",
                        "smoke"})
    files += " " + profile_path(p);
  std::string out = run_cmd(std::string(FAULTLINE_BIN) + " profile check" + files, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("failover.toml: ok: profile failover, 3 steps over 9s"), std::string::npos)
      << out;
}

// `profile check --mode` checks the deployment actions against a run's mode, as --profile does;
// without it, the mode a profile needs is said.
TEST(ProfileCli, CheckSaysAndChecksTheModeActionsNeed) {
  int status = -1;
  const std::string bin = std::string(FAULTLINE_BIN) + " profile check ";
  const std::string cf = profile_path("cluster-failover");
  std::string out = run_cmd(bin + cf + " 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("needs cluster mode (faultline --cluster HOST:PORT)"), std::string::npos)
      << out;
  out = run_cmd(bin + "--mode cluster " + cf + " " + profile_path("cluster-reshard") + " 2>&1",
                &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd(bin + "--mode=single " + cf + " 2>&1", &status);
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find(cf + ":"), std::string::npos) << out;
  EXPECT_NE(out.find("action 'cluster_failover' needs cluster mode"), std::string::npos) << out;
  out = run_cmd(bin + "--mode cluster " + profile_path("sentinel-failover") + " 2>&1", &status);
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find("needs sentinel mode (faultline --sentinel HOST:PORT --master NAME), and "
                     "this run is in cluster mode"),
            std::string::npos)
      << out;
  // A profile without actions says nothing about modes; one written for a single proxy is
  // checked as a deployment's run would load it.
  out = run_cmd(bin + "--mode single " + profile_path("outage") + " 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(out.find("needs"), std::string::npos) << out;
  out = run_cmd(bin + "--mode sentinel " + profile_path("outage") + " 2>&1", &status);
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find("'proxy' is missing (in sentinel mode"), std::string::npos) << out;
  out = run_cmd(bin + "--mode clusterr " + cf + " 2>&1", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("--mode must be single, cluster or sentinel, not 'clusterr'"),
            std::string::npos)
      << out;
  out = run_cmd(bin + "--mood cluster " + cf + " 2>&1", &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find("unknown option '--mood'"), std::string::npos) << out;
}

TEST(ProfileCli, BadProfileIsRejectedBeforeAnythingStarts) {
  std::string bad = temp_dir() + "/bad.toml";
  std::ofstream(bad) << "name = \"bad\"\n\n[[steps]]\nat = \"1s\"\nfor = \"2s\"\n"
                        "toxic = { type = \"latency\", attributes = { latency = -5 } }\n";
  int status = -1;
  std::string out = run_cmd(std::string(FAULTLINE_BIN) + " profile check " + bad + " 2>&1",
                            &status);
  EXPECT_EQ(status, 2);
  std::string msg = bad + ":6:54: step 1: toxic latency: attribute 'latency' is out of range "
                          "(0..3600000)";
  EXPECT_NE(out.find(msg), std::string::npos) << out;

  out = run_cmd(std::string(FAULTLINE_BIN) + " --api off --listen 127.0.0.1:0 --profile " + bad +
                    " 2>&1",
                &status);
  EXPECT_EQ(status, 2);
  EXPECT_NE(out.find(msg), std::string::npos) << out;
  EXPECT_EQ(out.find("listening"), std::string::npos) << "nothing may start: " << out;
}

// ---- The API ----

namespace {

const char* kSlowToml = R"(name = "slow"
[[steps]]
at = "0s"
for = "30s"
toxic = { type = "latency", attributes = { latency = 150 } }
)";

// The fastest of three PING round trips: load only adds time, a latency toxic delays all three.
long ping_ms(Conn& c) {
  long best = -1;
  for (int i = 0; i < 3; ++i) {
    auto a = Clock::now();
    EXPECT_EQ(call(c, {"PING"}), "+PONG\r\n");
    long ms = static_cast<long>(
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - a).count());
    best = best < 0 ? ms : std::min(best, ms);
  }
  return best;
}

} // namespace

TEST(ProfileApi, StartConflictReplaceStop) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  HttpClient& http = *run.http;
  Conn c(run.port);
  EXPECT_LT(ping_ms(c), 50);

  HttpResult r = http.request("POST", "/profiles", kSlowToml, "application/toml");
  ASSERT_EQ(r.status, 201) << r.body;
  json rep = json::parse(r.body);
  EXPECT_EQ(rep["name"], "slow");
  EXPECT_EQ(rep["state"], "running");
  EXPECT_GE(ping_ms(c), 140) << "the profile's latency is on";

  // Another profile while one runs: 409, unless asked to replace it.
  const char* json_profile = R"({"name": "misses", "steps": [{"at": "0s", "for": "30s",
      "toxic": {"type": "resp_reply", "attributes": {"reply": "nil", "commands": ["GET"]}}}]})";
  r = http.request("POST", "/profiles", json_profile);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("profile 'slow' is running"), std::string::npos) << r.body;

  r = http.request("POST", "/profiles?replace=true", json_profile);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_LT(ping_ms(c), 50) << "the replaced profile's latency is gone";
  ASSERT_EQ(run.redis_cmd({"SET", "x", "1"}), "+OK\r\n");
  EXPECT_EQ(call(c, {"GET", "x"}), "$-1\r\n");

  r = http.request("GET", "/profiles");
  ASSERT_EQ(r.status, 200);
  json list = json::parse(r.body);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "misses");
  EXPECT_EQ(list[0]["state"], "running");
  EXPECT_EQ(list[1]["name"], "slow");
  EXPECT_EQ(list[1]["state"], "stopped");

  r = http.request("DELETE", "/profiles/misses");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_EQ(call(c, {"GET", "x"}), "$1\r\n1\r\n") << "stopping undoes the profile";
  r = http.request("GET", "/proxies/redis/toxics");
  EXPECT_EQ(json::parse(r.body), json::array());
  r = http.request("GET", "/profiles/misses");
  ASSERT_EQ(r.status, 200);
  rep = json::parse(r.body);
  EXPECT_EQ(rep["state"], "stopped");
  EXPECT_EQ(rep["steps"][0]["counts"]["commands_faulted"], 1) << rep.dump(2);

  EXPECT_EQ(http.request("DELETE", "/profiles/nope").status, 404);
  EXPECT_EQ(http.request("GET", "/profiles/nope").status, 404);
}

// POST /reset leaves nothing injected, a running profile included: the profile stops (undoing
// its steps), and its report says who stopped it.
TEST(ProfileApi, ResetStopsTheRunningProfile) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  HttpClient& http = *run.http;
  Conn c(run.port);
  HttpResult r = http.request("POST", "/profiles", kSlowToml, "application/toml");
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_GE(ping_ms(c), 140) << "the profile's latency is on";

  r = http.request("POST", "/reset");
  EXPECT_EQ(r.status, 204) << r.body;
  EXPECT_LT(ping_ms(c), 50) << "the profile's latency is gone";
  r = http.request("GET", "/profiles/slow");
  ASSERT_EQ(r.status, 200);
  json rep = json::parse(r.body);
  EXPECT_EQ(rep["state"], "stopped") << rep.dump(2);
  EXPECT_EQ(rep["stopped_by"], "POST /reset") << rep.dump(2);
  EXPECT_EQ(json::parse(http.request("GET", "/proxies/redis/toxics").body), json::array());
  EXPECT_TRUE(wait_until([&] {
    return run.fl.process().log().find("profile slow: stopped by POST /reset") != std::string::npos;
  })) << run.fl.process().log();
  // With nothing running, reset is as before.
  EXPECT_EQ(http.request("POST", "/reset").status, 204);
}

// `faultline ctl profile run|status|stop|list` against the real binary.
TEST(ProfileApi, CtlRunsShowsAndStopsAProfile) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  const std::string ctl =
      std::string(FAULTLINE_BIN) + " ctl --api 127.0.0.1:" + std::to_string(run.api) + " ";
  std::string file = ::testing::TempDir() + "ctl-slow.toml";
  {
    std::ofstream(file) << kSlowToml;
  }
  Conn c(run.port);
  int status = -1;
  std::string out = run_cmd(ctl + "profile run " + file + " 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("profile slow: running"), std::string::npos) << out;
  EXPECT_GE(ping_ms(c), 140);

  out = run_cmd(ctl + "profile run " + file + " 2>&1", &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("profile 'slow' is running"), std::string::npos) << out;

  out = run_cmd(ctl + "profile status 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("profile slow: running"), std::string::npos) << out;
  EXPECT_NE(out.find("latency"), std::string::npos) << out;

  out = run_cmd(ctl + "profile list 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("slow"), std::string::npos) << out;

  out = run_cmd(ctl + "profile stop 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("stopped (stopped by DELETE /profiles/slow)"), std::string::npos) << out;
  EXPECT_LT(ping_ms(c), 50);

  out = run_cmd(ctl + "profile stop 2>&1", &status);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("no profile is running"), std::string::npos) << out;

  out = run_cmd(ctl + "--json profile status slow 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  json rep = json::parse(out, nullptr, false);
  EXPECT_EQ(rep.value("state", ""), "stopped") << out;

  // Replace and speed reach the API.
  out = run_cmd(ctl + "profile run " + file + " --speed 2 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  out = run_cmd(ctl + "--json profile run " + file + " --replace 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_EQ(json::parse(out, nullptr, false).value("state", ""), "running") << out;
  out = run_cmd(ctl + "profile stop slow 2>&1", &status);
  EXPECT_EQ(status, 0) << out;
}

TEST(ProfileApi, BadProfilesAre400WithThePlace) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  HttpResult r = run.http->request("POST", "/profiles",
                                   "name = \"x\"\n[[steps]]\nat = \"1s\"\nfor = \"1s\"\n"
                                   "action = \"sleep\"\n",
                                   "application/toml");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"],
            "POST /profiles:5:10: step 1: unknown action 'sleep' (one of: disable, enable, "
            "drop_connections, accept_reset, accept_hang, cluster_failover, migrate_slots, "
            "sentinel_failover)");
  r = run.http->request("POST", "/profiles", R"({"steps": [{"at": "1s", "action": "enable", "proxy": "db"}]})");
  EXPECT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["error"],
            "POST /profiles: step 1: unknown proxy 'db' (the profile declares: redis)");
  // A declared proxy that does not exist and has no addresses.
  r = run.http->request("POST", "/profiles",
                        R"({"proxies": [{"name": "db"}], "duration": "1s"})");
  EXPECT_EQ(r.status, 400);
  EXPECT_NE(r.body.find("proxy 'db' does not exist"), std::string::npos) << r.body;
  EXPECT_EQ(run.http->request("GET", "/profiles").body, "[]");
}

TEST(ProfileApi, ProfileDeclaresItsOwnProxy) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  json prof = {{"name", "own"},
               {"proxies",
                {{{"name", "cache"},
                  {"listen", "127.0.0.1:0"},
                  {"upstream", "127.0.0.1:" + std::to_string(run.redis.port())}}}},
               {"steps", {{{"at", "300ms"}, {"for", "30s"}, {"action", "disable"}}}}};
  HttpResult r = run.http->request("POST", "/profiles?speed=1", prof.dump());
  ASSERT_EQ(r.status, 201) << r.body;
  // The proxy, not a ping before 300 ms (a loaded machine can be later than that).
  r = run.http->request("GET", "/proxies/cache");
  ASSERT_EQ(r.status, 200) << "the profile created proxy 'cache'";
  uint16_t p2 = listen_port(json::parse(r.body).value("listen", ""));
  ASSERT_NE(p2, 0) << r.body;
  EXPECT_TRUE(wait_until([&] { return !pings(p2); }, 20s)) << "then disabled it";
  EXPECT_TRUE(pings(run.port)) << "'redis' untouched";
  EXPECT_EQ(run.http->request("DELETE", "/profiles/own").status, 204);
  EXPECT_TRUE(pings(p2)) << "re-enabled when the profile stops";
}

// ---- [expect]: what the clients must have done decides the exit code ----

namespace {

// faultline running a profile written by the test, with --exit-after-profile.
struct ExpectRun {
  Redis redis;
  Faultline fl;
  uint16_t port = 0, api = 0;
  void start(const std::string& name, const std::string& toml) {
    std::string path = temp_dir() + "/" + name + ".toml";
    std::ofstream(path) << toml;
    ASSERT_TRUE(redis.start());
    ASSERT_TRUE(fl.start_args({"--listen", "127.0.0.1:0", "--upstream",
                               "127.0.0.1:" + std::to_string(redis.port()), "--api",
                               "127.0.0.1:0", "--profile", path, "--exit-after-profile"}))
        << fl.process().log();
    port = fl.port();
    api = fl.api_port();
  }
  ~ExpectRun() {
    if (fl.process().running()) fl.stop();
  }
};

} // namespace

// A client that reconnects calmly and gets a good reply soon after the outage passes both
// expectations: faultline exits 0 once they are decided, and prints them.
TEST(ProfileExpect, AClientThatRecoversPassesAndExitsZero) {
  ExpectRun run;
  run.start("expect-pass", R"(name = "expect-pass"
duration = "1s"
[[steps]]
at = "200ms"
for = "500ms"
action = "disable"
[expect]
recover_within = "2s"
max_connects_per_second = 50
)");
  // A PING on a fresh connection every 50 ms (about 20 connects/s) until faultline exits.
  int ok = 0;
  auto t0 = Clock::now();
  while (run.fl.process().running() && Clock::now() - t0 < 8s) {
    ok += pings(run.port);
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_GT(ok, 5);
  auto st = run.fl.process().wait(3s);
  ASSERT_TRUE(st.has_value()) << "still running after the profile";
  std::string log = run.fl.process().log();
  EXPECT_EQ(*st, 0) << log;
  EXPECT_NE(log.find("profile expect-pass: expect: all 2 passed"), std::string::npos) << log;
  EXPECT_NE(log.find("clients of redis:"), std::string::npos) << log;
  EXPECT_NE(log.find("recover_within"), std::string::npos) << log;
  // What the clients did is printed with the verdicts, from the same moment: right above them.
  size_t line = log.find("clients of redis:");
  size_t verdicts = log.find("profile expect-pass: expect:");
  ASSERT_NE(line, std::string::npos);
  EXPECT_EQ(log.find('\n', line) + 1, verdicts) << log;
  EXPECT_NE(log.find("worst time to recover", line), std::string::npos) << log;
}

// A reconnect storm breaks max_connects_per_second: the verdict fails and so does faultline.
TEST(ProfileExpect, AReconnectStormFailsWithExitOne) {
  ExpectRun run;
  run.start("expect-storm", R"(name = "expect-storm"
[[steps]]
at = "0s"
for = "800ms"
toxic = { type = "latency", attributes = { latency = 1 } }
[expect]
max_connects_per_second = 5
)");
  int ok = 0;
  for (int i = 0; i < 30 && run.fl.process().running(); ++i) ok += pings(run.port);
  EXPECT_GT(ok, 5);
  auto st = run.fl.process().wait(5s);
  ASSERT_TRUE(st.has_value()) << "still running after the profile";
  std::string log = run.fl.process().log();
  EXPECT_EQ(*st, 1) << log;
  EXPECT_NE(log.find("profile expect-storm: expect: 1 of 1 FAILED"), std::string::npos) << log;
  EXPECT_NE(log.find("max_connects_per_second"), std::string::npos) << log;
  EXPECT_NE(log.find("exiting with 1"), std::string::npos) << log;
}

// No client comes back after the fault: recover_within waits that long after the fault
// ended, then fails; faultline does not wait forever.
TEST(ProfileExpect, NoRecoveryFailsOnceTheAllowanceRunsOut) {
  ExpectRun run;
  auto t0 = Clock::now();
  run.start("expect-norecovery", R"(name = "expect-norecovery"
duration = "400ms"
[[steps]]
at = "0s"
for = "300ms"
action = "disable"
[expect]
recover_within = "300ms"
)");
  auto st = run.fl.process().wait(6s);
  ASSERT_TRUE(st.has_value()) << "still running: the verdict never got decided";
  double took = std::chrono::duration<double>(Clock::now() - t0).count();
  std::string log = run.fl.process().log();
  EXPECT_EQ(*st, 1) << log;
  EXPECT_GE(took, 0.55) << "decided before the allowance ran out";
  EXPECT_NE(log.find("recover_within"), std::string::npos) << log;
  EXPECT_NE(log.find("FAIL"), std::string::npos) << log;
  // Said to be unrecovered, in the clients line and the verdict alike: never "worst N ms".
  EXPECT_NE(log.find("1 fault window not recovered (waiting "), std::string::npos) << log;
  EXPECT_NE(log.find("measured not recovered after "), std::string::npos) << log;
  EXPECT_EQ(log.find("worst time to recover"), std::string::npos) << log;
  EXPECT_EQ(log.find("measured worst"), std::string::npos) << log;
  // And both from the same moment: the clients line is not the state at the timeline's end
  // (100 ms after the fault) under a verdict decided 200 ms later.
  auto number_after = [&](const std::string& what) {
    size_t at = log.find(what);
    return at == std::string::npos ? -1.0 : std::atof(log.c_str() + at + what.size());
  };
  double waiting = number_after("not recovered (waiting ");
  double after = number_after("measured not recovered after ");
  // Decided when the allowance ran out: at 300 ms (whole ms) or later, never before.
  EXPECT_GE(after, 300) << log;
  EXPECT_NEAR(waiting, after, 2) << log;
}

TEST(ProfileExpect, BadExpectationsAreRejectedWithTheLine) {
  // `profile check` of a one-step profile whose [expect] table (line 6 on) is `expect`.
  std::string path = temp_dir() + "/bad-expect.toml";
  int status = -1;
  auto check = [&](const std::string& expect) {
    std::ofstream(path) << "name = \"bad\"\n[[steps]]\nat = \"0s\"\nfor = \"1s\"\naction = "
                           "\"disable\"\n[expect]\n"
                        << expect;
    return run_cmd(std::string(FAULTLINE_BIN) + " profile check " + path + " 2>&1", &status);
  };

  std::string out = check("recover_within = \"soon\"\n");
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find("bad-expect.toml:7:"), std::string::npos) << out;
  EXPECT_NE(out.find("[expect]: recover_within: 'soon' is not a duration"), std::string::npos)
      << out;

  out = check("resends = \"none\"\nmax_reconnects = 3\n");
  EXPECT_EQ(status, 2) << out;
  EXPECT_NE(out.find("bad-expect.toml:8:1: [expect]: unknown key 'max_reconnects'"),
            std::string::npos)
      << out;

  out = check("resends = \"none\"\nrecover_within = \"2s\"\n");
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("expect recover_within = \"2s\""), std::string::npos) << out;
}

// On the API, a profile's report carries its [expect] verdicts and what its clients did.
TEST(ProfileApi, ReportCarriesVerdictsAndClients) {
  ProfileRun run;
  run.start("api", 1, {}, /*with_profile=*/false);
  HttpClient& http = *run.http;
  const char* body = R"({"name": "judged", "duration": "400ms",
      "steps": [{"at": "0s", "for": "200ms", "action": "disable"}],
      "expect": {"resends": "none", "max_connects_per_second": 100}})";
  HttpResult r = http.request("POST", "/profiles", body);
  ASSERT_EQ(r.status, 201) << r.body;
  run.name = "judged";
  ASSERT_TRUE(wait_until([&] { return pings(run.port); }, 5s));
  json rep;
  ASSERT_TRUE(wait_until(
      [&] {
        rep = run.report();
        return rep.contains("expect") && rep["expect"].value("decided", false);
      },
      5s))
      << rep.dump();
  EXPECT_EQ(rep["state"], "finished");
  EXPECT_EQ(rep["expect"]["failed"], false) << rep.dump();
  ASSERT_EQ(rep["expect"]["verdicts"].size(), 2u) << rep.dump();
  for (const auto& v : rep["expect"]["verdicts"]) {
    EXPECT_EQ(v["proxy"], "redis");
    EXPECT_EQ(v["state"], "pass") << v.dump();
  }
  ASSERT_TRUE(rep["clients"].contains("redis")) << rep.dump();
  EXPECT_GE(rep["clients"]["redis"]["connects"]["total"].get<int>(), 1) << rep.dump();
  ASSERT_FALSE(rep["clients"]["redis"]["windows"].empty()) << rep.dump();
}
