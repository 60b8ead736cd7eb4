// latency on the real data path: a real redis-server behind a proxy, PING round trips timed.

#include <algorithm>
#include <vector>

#include "toxic_harness.h"

namespace fltox {
namespace {

double ping_ms(Client& c) {
  auto t0 = Clock::now();
  EXPECT_TRUE(c.send("PING\r\n"));
  EXPECT_EQ(c.read_exact(7, 5s), "+PONG\r\n");
  return ms_since(t0);
}

// Load only adds time: every round trip is at least the latency (the lower bound holds for
// each), and the fastest of three is below the next step up (the upper bound holds for it:
// one stalled round trip does not move it).
void expect_latency(Client& c, double at_least, double below) {
  double fastest = 1e9;
  for (int i = 0; i < 3; ++i) {
    double ms = ping_ms(c);
    EXPECT_GE(ms, at_least);
    fastest = std::min(fastest, ms);
  }
  EXPECT_LT(fastest, below);
}

TEST(LatencyToxic, AddsLatencyPerDirection) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  Client c(pl.port());
  expect_latency(c, 0, 50.0); // no toxic: the baseline is well under the tolerance

  pl.add("lat_up", "latency", Up, {{"latency", 100}});
  expect_latency(c, 99.0, 160.0);
  pl.remove("lat_up");
  pl.add("lat_down", "latency", Down, {{"latency", 150}});
  expect_latency(c, 149.0, 210.0);
  pl.add("lat_up", "latency", Up, {{"latency", 100}}); // both directions add up
  expect_latency(c, 249.0, 310.0);
}

TEST(LatencyToxic, JitterStaysWithinBounds) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("jit", "latency", Down, {{"latency", 60}, {"jitter", 40}});
  Client c(pl.port());
  std::vector<double> all;
  for (int i = 0; i < 20; ++i) {
    double ms = ping_ms(c);
    EXPECT_GE(ms, 19.0);
    all.push_back(ms);
  }
  std::sort(all.begin(), all.end());
  // At most 100 ms: held for the median, which a few stalled round trips (load only adds
  // time) do not move past 130 ms.
  EXPECT_LT(all[all.size() / 2], 130.0);
  // Uniform over [20, 100] ms: 20 samples all on one side of 60 has odds 2^-19.
  EXPECT_LT(all.front(), 60.0);
  EXPECT_GT(all.back(), 60.0);
}

} // namespace
} // namespace fltox
