// reset_peer: the client sees ECONNRESET `timeout` ms after data reached the toxic.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(ResetPeerToxic, ClientGetsConnResetAfterTimeout) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("rp", "reset_peer", Up, {{"timeout", 200}});
  Client c(pl.port());
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send("PING\r\n"));
  ssize_t st = 1;
  std::string got = c.read_to_end(5s, &st);
  double ms = ms_since(t0);
  EXPECT_EQ(got, ""); // what reached the toxic was not forwarded
  EXPECT_EQ(st, -ECONNRESET);
  // Load only adds time: at least the timeout, below twice it.
  EXPECT_GE(ms, 190.0);
  EXPECT_LT(ms, 390.0);
}

TEST(ResetPeerToxic, ZeroResetsOnFirstDataOnly) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("rp", "reset_peer", Down, {{"timeout", 0}});
  Client c(pl.port());
  EXPECT_TRUE(c.quiet_for(200ms)); // nothing came from Redis yet: no reset
  ASSERT_TRUE(c.send("PING\r\n"));
  ssize_t st = 1;
  EXPECT_EQ(c.read_to_end(5s, &st), "");
  EXPECT_EQ(st, -ECONNRESET);
}

TEST(ResetPeerToxic, RemovedBeforeTheResetReleasesData) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("rp", "reset_peer", Up, {{"timeout", 5000}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_TRUE(c.quiet_for(200ms));
  pl.remove("rp");
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
}

} // namespace
} // namespace fltox
