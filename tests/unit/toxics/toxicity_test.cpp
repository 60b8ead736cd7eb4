// toxicity: rolled once per connection with the proxy's seeded generator, so the set of affected
// connections is about `toxicity` of them and the same for the same seed.

#include <set>

#include "toxic_harness.h"

namespace fltox {
namespace {

// Opens `n` connections one after another; returns the sequence numbers the toxic hit.
std::vector<int> affected(uint64_t seed, int n) {
  ProxyLoop pl(redis_port(), seed);
  // reset_peer 0 downstream: a hit connection is reset by the PONG, the others get it.
  pl.add("rp", "reset_peer", Down, {{"timeout", 0}}, 0.5);
  std::vector<int> hit;
  for (int i = 0; i < n; ++i) {
    Client c(pl.port());
    EXPECT_TRUE(c.send("PING\r\n"));
    ssize_t st = 1;
    std::string got = c.read_exact(7, 5s, &st);
    if (got == "+PONG\r\n") continue;
    EXPECT_EQ(got, "");
    EXPECT_EQ(st, -ECONNRESET) << "connection " << i;
    hit.push_back(i);
  }
  return hit;
}

TEST(Toxicity, HalfTheConnectionsSameOnesForTheSameSeed) {
  FLTOX_NEED_REDIS();
  constexpr int kConns = 200;
  std::vector<int> a = affected(1234, kConns);
  std::vector<int> b = affected(1234, kConns);
  std::vector<int> other = affected(99, kConns);
  // Binomial(200, 0.5): mean 100, sd ~7.1; ±5 sd.
  EXPECT_GE(a.size(), 65u);
  EXPECT_LE(a.size(), 135u);
  EXPECT_EQ(a, b) << "same seed, same connection sequence: the same connections must be hit";
  EXPECT_NE(a, other) << "another seed should hit another set (odds of equality 2^-200)";
}

} // namespace
} // namespace fltox
