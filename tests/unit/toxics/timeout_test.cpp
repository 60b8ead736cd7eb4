// timeout: a black hole that closes after `timeout`, or holds until the toxic goes away.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(TimeoutToxic, HoldsDataAndClosesAfterTimeout) {
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
  EXPECT_GE(ms, 290.0);
  EXPECT_LT(ms, 450.0);
}

TEST(TimeoutToxic, ZeroHoldsUntilRemovedThenReleasesInOrder) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("to", "timeout", Up, {{"timeout", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  ASSERT_TRUE(c.send(resp_cmd({"ECHO", "a"})));
  ASSERT_TRUE(c.send(resp_cmd({"ECHO", "b"})));
  EXPECT_TRUE(c.quiet_for(400ms)); // held, and the connection stays open
  pl.remove("to");
  EXPECT_EQ(c.read_exact(21, 2s), "+PONG\r\n$1\r\na\r\n$1\r\nb\r\n");
  ASSERT_TRUE(c.send("PING\r\n")); // and the connection is back to normal
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
}

TEST(TimeoutToxic, UpdateKeepsPositionAndReleasesHeldData) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("first", "latency", Down, {{"latency", 0}});
  pl.add("hole", "timeout", Down, {{"timeout", 0}});
  pl.add("last", "latency", Down, {{"latency", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_TRUE(c.quiet_for(300ms));
  // Same name, new attributes: the held reply goes on into the new stage in the same place,
  // which now lets it through after 50 ms.
  pl.update("hole", "latency", Down, {{"latency", 50}});
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
  auto names = pl.call([&] {
    std::vector<std::string> n;
    for (const auto& t : pl.proxy().toxics()) n.push_back(t.name);
    return n;
  });
  EXPECT_EQ(names, (std::vector<std::string>{"first", "hole", "last"}));
}

} // namespace
} // namespace fltox
