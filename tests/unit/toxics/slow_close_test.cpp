// slow_close: the FIN arrives `delay` ms late, data does not.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(SlowCloseToxic, DelaysTheFinFromRedis) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("sc", "slow_close", Down, {{"delay", 300}});
  Client c(pl.port());
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send("QUIT\r\n")); // Redis answers +OK and closes
  EXPECT_EQ(c.read_exact(5, 2s), "+OK\r\n");
  EXPECT_LT(ms_since(t0), 290.0); // data is not delayed (the delay would make it 300 ms)
  ssize_t st = 1;
  EXPECT_EQ(c.read_to_end(5s, &st), "");
  double ms = ms_since(t0);
  EXPECT_EQ(st, 0);
  // Load only adds time: at least the delay, below twice it (the delay applied once).
  EXPECT_GE(ms, 290.0);
  EXPECT_LT(ms, 590.0);
}

TEST(SlowCloseToxic, DelaysTheFinFromTheClient) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("sc", "slow_close", Up, {{"delay", 300}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
  auto t0 = Clock::now();
  c.shutdown_write(); // Redis sees the FIN 300 ms later and closes; then so does the client
  ssize_t st = 1;
  EXPECT_EQ(c.read_to_end(5s, &st), "");
  double ms = ms_since(t0);
  EXPECT_EQ(st, 0);
  EXPECT_GE(ms, 290.0);
  EXPECT_LT(ms, 590.0); // the delay applied once, with room for a loaded machine
}

} // namespace
} // namespace fltox
