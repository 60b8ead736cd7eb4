#include <gtest/gtest.h>

#include <algorithm>

#include "observe/metrics.h"

namespace faultline::observe {
namespace {

// The bucket comes from a table by bit width; it must be the one a search over the bounds gives.
TEST(LatencyHistogram, BucketMatchesBinarySearch) {
  auto search = [](uint64_t v) {
    const auto& b = LatencyHistogram::kBoundsUs;
    return size_t(std::lower_bound(b.begin(), b.end(), v) - b.begin());
  };
  for (uint64_t v = 0; v < 200'000; ++v) ASSERT_EQ(LatencyHistogram::bucket_of(v), search(v)) << v;
  for (uint64_t bound : LatencyHistogram::kBoundsUs)
    for (uint64_t v : {bound - 1, bound, bound + 1})
      EXPECT_EQ(LatencyHistogram::bucket_of(v), search(v)) << v;
  for (int s = 0; s < 64; ++s) {
    uint64_t v = uint64_t(1) << s;
    EXPECT_EQ(LatencyHistogram::bucket_of(v), search(v)) << v;
    EXPECT_EQ(LatencyHistogram::bucket_of(v - 1), search(v - 1)) << v - 1;
  }
  EXPECT_EQ(LatencyHistogram::bucket_of(UINT64_MAX), LatencyHistogram::kBuckets - 1);
}

TEST(LatencyHistogram, RecordCounts) {
  LatencyHistogram h;
  h.record(0);
  h.record(1);
  h.record(6);
  h.record(20'000'000);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.bucket(0), 2u);
  EXPECT_EQ(h.bucket(4), 1u);  // 5 < 6 <= 7
  EXPECT_EQ(h.bucket(LatencyHistogram::kBuckets - 1), 1u);
  EXPECT_EQ(h.max_us(), 20'000'000u);
  EXPECT_EQ(h.sum_us(), 20'000'007u);
}

} // namespace
} // namespace faultline::observe
