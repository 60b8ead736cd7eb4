// limit_data: exactly N bytes, then the connection ends.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(LimitDataToxic, DownstreamDeliversExactlyNBytesThenEof) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(64 * 1024, 6);
  ASSERT_TRUE(RedisServer::instance().set("fltox:limit", value));
  ProxyLoop pl(redis_port());
  pl.add("ld", "limit_data", Down, {{"bytes", 1000}});
  Client c(pl.port());
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:limit"})));
  ssize_t st = 1;
  std::string got = c.read_to_end(5s, &st);
  EXPECT_EQ(st, 0);
  EXPECT_EQ(got, resp_bulk(value).substr(0, 1000));
}

TEST(LimitDataToxic, CountsAcrossReplies) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("ld", "limit_data", Down, {{"bytes", 10}});
  Client c(pl.port());
  ASSERT_TRUE(c.send("PING\r\n"));
  EXPECT_EQ(c.read_exact(7, 2s), "+PONG\r\n");
  ASSERT_TRUE(c.send("PING\r\n"));
  ssize_t st = 1;
  EXPECT_EQ(c.read_to_end(5s, &st), "+PO");
  EXPECT_EQ(st, 0);
}

TEST(LimitDataToxic, UpstreamLimitEndsTheConnection) {
  FLTOX_NEED_REDIS();
  ProxyLoop pl(redis_port());
  pl.add("ld", "limit_data", Up, {{"bytes", 6}});
  Client c(pl.port());
  // Redis gets exactly the first PING and then a FIN, answers it and closes.
  ASSERT_TRUE(c.send("PING\r\nPING\r\n"));
  ssize_t st = 1;
  EXPECT_EQ(c.read_to_end(5s, &st), "+PONG\r\n");
  EXPECT_EQ(st, 0);
}

} // namespace
} // namespace fltox
