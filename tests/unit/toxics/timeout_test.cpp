// timeout: a black hole that drops what it stops (as Toxiproxy's does) and closes after
// `timeout`, or drops until the toxic goes away.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(TimeoutToxic, DropsDataAndClosesAfterTimeout) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("to", "timeout", Up, {{"timeout", 300}});
  auto t0 = Clock::now();
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  ssize_t st = 1;
  std::string got = c.read_to_end(5s, &st);
  double ms = ms_since(t0);
  EXPECT_EQ(got, "");
  EXPECT_EQ(st, 0) << "expected a clean close (EOF), got " << st;
  // Load only adds time: at least the timeout, below twice it.
  EXPECT_GE(ms, 290.0);
  EXPECT_LT(ms, 590.0);
}

TEST(TimeoutToxic, ZeroDropsUntilRemovedAndNothingLandsLater) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("to", "timeout", Up, {{"timeout", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send(resp_cmd({"SET", "timeout:dropped", "1"})));
  EXPECT_TRUE(c.quiet_for(400ms)); // dropped, and the connection stays open
  pl.remove("to");
  // The write the client gave up on never reaches Redis; the connection works again.
  ASSERT_TRUE(c.send(resp_cmd({"EXISTS", "timeout:dropped"})));
  EXPECT_EQ(c.read_exact(4, 2s), ":0\r\n");
  EXPECT_TRUE(c.quiet_for(200ms));
}

TEST(TimeoutToxic, TheClientsCloseEndsTheSession) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("to", "timeout", Up, {{"timeout", 0}});
  {
    Client c(pl.port());
    ASSERT_TRUE(c.send(std::string(4 << 20, 'x'))); // far past the high watermark
    EXPECT_EQ(pl.sessions(), 1u);
  }
  // Nothing held, so the source is still read and its close is seen.
  const auto deadline = Clock::now() + 2s;
  while (pl.sessions() != 0 && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  EXPECT_EQ(pl.sessions(), 0u);
}

TEST(TimeoutToxic, UpdateKeepsPosition) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("first", "latency", Down, {{"latency", 0}});
  pl.add("hole", "timeout", Down, {{"timeout", 0}});
  pl.add("last", "latency", Down, {{"latency", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_TRUE(c.quiet_for(300ms)); // its reply was dropped
  // Same name, new attributes: the new stage takes the same place and lets replies through
  // after 50 ms; the dropped one does not come back.
  pl.update("hole", "latency", Down, {{"latency", 50}});
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
  EXPECT_TRUE(c.quiet_for(200ms));
  auto names = pl.call([&] {
    std::vector<std::string> n;
    for (const auto& t : pl.proxy().toxics()) n.push_back(t.name);
    return n;
  });
  EXPECT_EQ(names, (std::vector<std::string>{"first", "hole", "last"}));
}

} // namespace
} // namespace fltox
