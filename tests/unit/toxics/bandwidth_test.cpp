// bandwidth: timed transfers through a real redis-server.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(BandwidthToxic, OneMegabyteDownstreamAtTheConfiguredRate) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(1'000'000, 1);
  ASSERT_TRUE(RedisServer::instance().set("fltox:bw", value));
  ProxyLoop pl(redis_port());
  pl.add("bw", "bandwidth", Down, {{"rate", 2000}}); // KB/s = bytes per ms
  Client c(pl.port());
  std::string expected = resp_bulk(value);
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:bw"})));
  std::string got = c.read_exact(expected.size(), 10s);
  double ms = ms_since(t0);
  EXPECT_TRUE(got == expected) << "reply differs (" << got.size() << " bytes)";
  double want = static_cast<double>(expected.size()) / 2000.0; // ~500 ms
  // Load only adds time: no faster than the rate (-20%), and well below half of it (+80%).
  EXPECT_GE(ms, want * 0.8);
  EXPECT_LT(ms, want * 1.8);
}

TEST(BandwidthToxic, OneMegabyteUpstreamAtTheConfiguredRate) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(1'000'000, 2);
  ProxyLoop pl(redis_port());
  pl.add("bw", "bandwidth", Up, {{"rate", 4000}});
  Client c(pl.port());
  std::string cmd = resp_cmd({"SET", "fltox:bw_up", value});
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send(cmd));
  EXPECT_EQ(c.read_exact(5, 10s), "+OK\r\n");
  double ms = ms_since(t0);
  double want = static_cast<double>(cmd.size()) / 4000.0; // ~250 ms
  EXPECT_GE(ms, want * 0.8);
  EXPECT_LT(ms, want * 1.8);
  Client direct(redis_port());
  direct.send(resp_cmd({"GET", "fltox:bw_up"}));
  EXPECT_TRUE(direct.read_exact(resp_bulk(value).size()) == resp_bulk(value));
}

TEST(BandwidthToxic, RateZeroHoldsEverythingUntilRemoved) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("bw", "bandwidth", Down, {{"rate", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\nPING\r\n"));
  EXPECT_TRUE(c.quiet_for(300ms));
  pl.remove("bw");
  EXPECT_EQ(c.read_exact(14, 2s), "+PONG\r\n+PONG\r\n");
}

} // namespace
} // namespace fltox
