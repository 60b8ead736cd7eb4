// slicer: a raw reader sees the reply in many small reads, every byte intact.

#include "toxic_harness.h"

namespace fltox {
namespace {

TEST(SlicerToxic, RawReaderSeesManySmallReads) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(64 * 1024, 3);
  ASSERT_TRUE(RedisServer::instance().set("fltox:slice", value));
  ProxyLoop pl(redis_port());
  pl.add("sl", "slicer", Down, {{"average_size", 1024}, {"size_variation", 256}, {"delay", 2000}});
  Client c(pl.port());
  std::string expected = resp_bulk(value);
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:slice"})));
  std::string got;
  int reads = 0;
  size_t largest = 0;
  char buf[16384];
  while (got.size() < expected.size()) {
    ssize_t n = c.recv_some(buf, sizeof buf, 5s);
    ASSERT_GT(n, 0) << "after " << got.size() << " bytes";
    got.append(buf, static_cast<size_t>(n));
    largest = std::max(largest, static_cast<size_t>(n));
    ++reads;
  }
  EXPECT_TRUE(got == expected);
  // ~65 KB in pieces of at most 1280 bytes, 2 ms apart: 51..100 pieces. Leave room for a busy
  // machine coalescing a few of them.
  EXPECT_GE(reads, 40);
  EXPECT_LT(largest, 16384u);
}

TEST(SlicerToxic, SubMillisecondDelayKeepsThePace) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(64 * 1024, 4);
  ASSERT_TRUE(RedisServer::instance().set("fltox:slice_us", value));
  ProxyLoop pl(redis_port());
  // Pieces of at most 120 bytes, 200 µs apart: at least 546 pieces, so at least ~109 ms.
  pl.add("sl", "slicer", Down, {{"average_size", 100}, {"size_variation", 20}, {"delay", 200}});
  Client c(pl.port());
  std::string expected = resp_bulk(value);
  auto t0 = Clock::now();
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:slice_us"})));
  std::string got = c.read_exact(expected.size(), 10s);
  double ms = ms_since(t0);
  EXPECT_TRUE(got == expected);
  EXPECT_GE(ms, 100.0);
  EXPECT_LT(ms, 1000.0);
}

TEST(SlicerToxic, UpstreamSlicesReachRedisIntact) {
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(200'000, 5);
  ProxyLoop pl(redis_port());
  pl.add("sl", "slicer", Up, {{"average_size", 7}, {"size_variation", 3}, {"delay", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send(resp_cmd({"SET", "fltox:slice_up", value})));
  EXPECT_EQ(c.read_exact(5, 10s), "+OK\r\n");
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:slice_up"})));
  EXPECT_TRUE(c.read_exact(resp_bulk(value).size(), 10s) == resp_bulk(value));
}

TEST(SlicerToxic, VariationEqualToTheAverageKeepsEveryByte) {
  // size_variation == average_size, as Toxiproxy allows: a cut may fall at the very start of a
  // span, which must neither lose nor repeat bytes nor loop.
  FLTOX_NEED_REDIS();
  std::string value = random_bytes(20'000, 6);
  ProxyLoop pl(redis_port());
  pl.add("sl", "slicer", Up, {{"average_size", 3}, {"size_variation", 3}, {"delay", 0}});
  pl.add("sd", "slicer", Down, {{"average_size", 1}, {"size_variation", 1}, {"delay", 0}});
  Client c(pl.port());
  ASSERT_TRUE(c.send(resp_cmd({"SET", "fltox:slice_eq", value})));
  EXPECT_EQ(c.read_exact(5, 10s), "+OK\r\n");
  ASSERT_TRUE(c.send(resp_cmd({"GET", "fltox:slice_eq"})));
  EXPECT_TRUE(c.read_exact(resp_bulk(value).size(), 20s) == resp_bulk(value));
}

} // namespace
} // namespace fltox
