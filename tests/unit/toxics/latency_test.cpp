// latency on the real data path: a real redis-server behind a proxy, PING round trips timed.

#include "toxic_harness.h"

namespace fltox {
namespace {

double ping_ms(Client& c) {
  auto t0 = Clock::now();
  EXPECT_TRUE(c.send("PING\r\n"));
  EXPECT_EQ(c.read_exact(7, 5s), "+PONG\r\n");
  return ms_since(t0);
}

TEST(LatencyToxic, AddsLatencyPerDirection) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  Client c(pl.port());
  EXPECT_LT(ping_ms(c), 50.0); // no toxic: the baseline is well under the tolerance

  pl.add("lat_up", "latency", Up, {{"latency", 100}});
  for (int i = 0; i < 3; ++i) {
    double ms = ping_ms(c);
    EXPECT_GE(ms, 99.0);
    EXPECT_LT(ms, 160.0);
  }
  pl.remove("lat_up");
  pl.add("lat_down", "latency", Down, {{"latency", 150}});
  for (int i = 0; i < 3; ++i) {
    double ms = ping_ms(c);
    EXPECT_GE(ms, 149.0);
    EXPECT_LT(ms, 210.0);
  }
  pl.add("lat_up", "latency", Up, {{"latency", 100}}); // both directions add up
  double ms = ping_ms(c);
  EXPECT_GE(ms, 249.0);
  EXPECT_LT(ms, 310.0);
}

TEST(LatencyToxic, JitterStaysWithinBounds) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("jit", "latency", Down, {{"latency", 60}, {"jitter", 40}});
  Client c(pl.port());
  double lo = 1e9, hi = 0;
  for (int i = 0; i < 20; ++i) {
    double ms = ping_ms(c);
    EXPECT_GE(ms, 19.0);
    EXPECT_LT(ms, 130.0);
    lo = std::min(lo, ms);
    hi = std::max(hi, ms);
  }
  // Uniform over [20, 100] ms: 20 samples all on one side of 60 has odds 2^-19.
  EXPECT_LT(lo, 60.0);
  EXPECT_GT(hi, 60.0);
}

} // namespace
} // namespace fltox
