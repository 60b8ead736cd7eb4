#include "observe/sink.h"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "observe/metrics.h"

namespace faultline::observe {
namespace {

std::string temp_path(const char* name) {
  return std::string(::testing::TempDir()) + "/" + name + "-" + std::to_string(getpid());
}

std::string slurp(const std::string& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Runs the loop until pred holds (bounded).
bool run_until(uv_loop_t* loop, const std::function<bool()>& pred) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(200);
  }
  return true;
}

TEST(LogSink, WritesAFileInOrderAndReopensIt) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string path = temp_path("sink"), moved = path + ".1";
  std::remove(path.c_str());
  std::remove(moved.c_str());
  std::string err;
  LogSink* s = LogSink::open(&loop, path, 1 << 20, err);
  ASSERT_NE(s, nullptr) << err;
  std::string expect;
  for (int i = 0; i < 1000; ++i) {
    std::string rec = "record " + std::to_string(i) + "\n";
    EXPECT_TRUE(s->append(rec));
    expect += rec;
    if (i % 100 == 0) s->flush();
  }
  s->flush();
  ASSERT_TRUE(run_until(&loop, [&] { return s->records_written() == 1000; }));
  EXPECT_EQ(slurp(path), expect);
  // logrotate: the file is moved away, then the sink is told to reopen.
  ASSERT_EQ(std::rename(path.c_str(), moved.c_str()), 0);
  s->reopen();
  ASSERT_TRUE(run_until(&loop, [&] { return s->reopens() == 1; }));
  s->append("after\n");
  s->flush();
  ASSERT_TRUE(run_until(&loop, [&] { return s->records_written() == 1001; }));
  EXPECT_EQ(slurp(path), "after\n");
  EXPECT_EQ(slurp(moved), expect);
  s->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

// Records formatted in place (reserve, commit) interleave with appended ones, in order; a
// reservation that might not fit is refused, so the caller falls back to append, which goes by
// the real size.
TEST(LogSink, RecordsFormattedInPlaceJoinTheAppendedOnes) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string path = temp_path("sink-in-place");
  std::remove(path.c_str());
  std::string err;
  LogSink* s = LogSink::open(&loop, path, 4096, err);
  ASSERT_NE(s, nullptr) << err;
  std::string expect;
  for (int i = 0; i < 20; ++i) {
    std::string rec = "record " + std::to_string(i) + "\n";
    if (i % 2) {
      char* p = s->reserve(rec.size() + 100); // more room than the record takes
      ASSERT_NE(p, nullptr);
      s->commit(write_bytes(p, rec));
    } else {
      EXPECT_TRUE(s->append(rec));
    }
    expect += rec;
  }
  EXPECT_EQ(s->buffered(), expect.size());
  EXPECT_EQ(s->reserve(4096), nullptr); // might not fit: refused, nothing counted
  EXPECT_EQ(s->records_dropped(), 0u);
  s->flush();
  ASSERT_TRUE(run_until(&loop, [&] { return s->records_written() == 20; }));
  EXPECT_EQ(slurp(path), expect);
  s->close();
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  std::remove(path.c_str());
}

TEST(LogSink, AFifoNobodyReadsDropsAndCountsWithoutBlocking) {
  std::signal(SIGPIPE, SIG_IGN); // as faultline does: a reader that leaves is an error value
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string path = temp_path("fifo");
  std::remove(path.c_str());
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  int reader = ::open(path.c_str(), O_RDONLY | O_NONBLOCK); // there, but never reads
  ASSERT_GE(reader, 0);
  std::string err;
  LogSink* s = LogSink::open(&loop, path, 256 << 10, err);
  ASSERT_NE(s, nullptr) << err;
  std::string rec(200, 'x');
  rec += '\n';
  auto start = std::chrono::steady_clock::now();
  uint64_t accepted = 0;
  for (int i = 0; i < 20000; ++i) {
    accepted += s->append(rec);
    if (i % 64 == 0) {
      s->flush();
      uv_run(&loop, UV_RUN_NOWAIT);
    }
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(2)); // never waited for the reader
  EXPECT_GT(s->records_dropped(), 0u);
  EXPECT_EQ(s->records_dropped() + accepted, 20000u);
  s->close();
  ::close(reader);
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
  std::remove(path.c_str());
}

TEST(LogSink, AFifoWithoutReaderIsAnErrorAtOpen) {
  uv_loop_t loop;
  uv_loop_init(&loop);
  std::string path = temp_path("fifo-noreader");
  std::remove(path.c_str());
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  std::string err;
  EXPECT_EQ(LogSink::open(&loop, path, 1 << 20, err), nullptr);
  EXPECT_NE(err.find("cannot open"), std::string::npos);
  uv_loop_close(&loop);
  std::remove(path.c_str());
}

TEST(LatencyHistogram, QuantilesStayInsideTheRightBucket) {
  LatencyHistogram h;
  for (uint64_t v = 1; v <= 1000; ++v) h.record(v);
  EXPECT_EQ(h.count(), 1000u);
  EXPECT_EQ(h.max_us(), 1000u);
  EXPECT_EQ(h.sum_us(), 500500u);
  // p50 = 500 exactly on a bucket bound; p90 = 900 is in (700, 1000].
  EXPECT_NEAR(h.quantile(0.5), 500, 1);
  EXPECT_GT(h.quantile(0.9), 700);
  EXPECT_LE(h.quantile(0.9), 1000);
  EXPECT_LE(h.quantile(1.0), 1000);
  LatencyHistogram big;
  big.record(60'000'000); // beyond the last bound: +Inf bucket, capped at the max
  EXPECT_EQ(big.bucket(LatencyHistogram::kBuckets - 1), 1u);
  EXPECT_DOUBLE_EQ(big.quantile(0.99), 60'000'000.0);
  EXPECT_EQ(us_to_seconds(1), "0.000001");
  EXPECT_EQ(us_to_seconds(2500000), "2.5");
  EXPECT_EQ(us_to_seconds(3000000), "3");
}

} // namespace
} // namespace faultline::observe
