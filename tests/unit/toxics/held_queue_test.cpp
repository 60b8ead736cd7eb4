// HeldQueue and HoldingStage: what a holding stage keeps leaves in arrival order, the FIN last;
// release_due never lets a later item pass an earlier one; flush hands on everything, a held
// FIN included, and stops the stage's timer. No sockets: an Output that records, a real loop.

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <uv.h>

#include "toxics/held_queue.h"

namespace faultline::toxics {
namespace {

// Records what reaches it: chunk contents, and "<eof>".
class Recorder final : public Output {
public:
  explicit Recorder(uv_loop_t* loop = nullptr) : loop_(loop) {}
  void data(Chunk c) override { got.emplace_back(c.data(), c.len); }
  void eof() override { got.emplace_back("<eof>"); }
  void dropped(size_t) override {}
  void close_session() override {}
  void reset_session() override {}
  uv_loop_t* loop() override { return loop_; }
  std::mt19937_64& rng() override { return rng_; }
  uv::BufferPool& pool() override { return pool_; }

  Chunk chunk(const std::string& s) { return pool_.make_chunk(s.data(), s.size()); }
  std::vector<std::string> got;

private:
  uv_loop_t* loop_;
  std::mt19937_64 rng_{1};
  uv::BufferPool pool_;
};

using Got = std::vector<std::string>;

TEST(ToxicHeldQueue, ReleasesInArrivalOrderWithTheEofLast) {
  Recorder out;
  HeldQueue q(out);
  q.hold(out.chunk("a"));
  q.hold(out.chunk("bc"));
  q.hold_eof();
  EXPECT_EQ(q.size(), 3u);
  EXPECT_TRUE(out.got.empty()) << "holding hands nothing on";
  q.release_front();
  EXPECT_EQ(out.got, Got({"a"}));
  q.flush();
  EXPECT_EQ(out.got, Got({"a", "bc", "<eof>"}));
  EXPECT_TRUE(q.empty());
}

TEST(ToxicHeldQueue, ReleaseDueKeepsOrderOverDueTimes) {
  Recorder out;
  HeldQueue q(out);
  q.hold(out.chunk("1"), 10);
  q.hold(out.chunk("2"), 5); // due earlier (jitter), but behind "1"
  q.hold(out.chunk("3"), 20);
  q.hold_eof(20);
  q.release_due(9);
  EXPECT_TRUE(out.got.empty()) << "\"2\" is due but must not pass \"1\"";
  q.release_due(10);
  EXPECT_EQ(out.got, Got({"1", "2"}));
  EXPECT_EQ(q.front().due, 20u);
  q.release_due(20);
  EXPECT_EQ(out.got, Got({"1", "2", "3", "<eof>"}));
}

TEST(ToxicHeldQueue, FlushOfAPartlyReleasedHeadHandsOnTheRest) {
  // bandwidth sends the front chunk in pieces; what is left of it goes first on flush.
  Recorder out;
  HeldQueue q(out);
  q.hold(out.chunk("abcdef"));
  q.hold(out.chunk("gh"));
  out.data(q.front().chunk.take_front(2));
  q.flush();
  EXPECT_EQ(out.got, Got({"ab", "cdef", "gh"}));
}

TEST(ToxicHeldQueue, FlushOfAnEmptyQueueDoesNothing) {
  Recorder out;
  HeldQueue q(out);
  q.flush();
  q.release_due(100);
  EXPECT_TRUE(out.got.empty());
}

// A stage that holds everything until its timer fires `delay_ms` after the first item.
class HoldAll final : public HoldingStage {
public:
  HoldAll(Output& out, uint64_t delay_ms) : HoldingStage(out), delay_ms_(delay_ms) {}
  void on_data(Chunk c) override {
    held_.hold(std::move(c));
    arm();
  }
  void on_eof() override {
    held_.hold_eof();
    arm();
  }

private:
  void arm() {
    if (!timer_.active()) timer_.start(delay_ms_, [this] { held_.flush(); });
  }
  uint64_t delay_ms_;
};

TEST(ToxicHoldingStage, TimerReleasesAndFlushStopsTheTimer) {
  uv_loop_t loop;
  ASSERT_EQ(uv_loop_init(&loop), 0);
  {
    Recorder out(&loop);
    HoldAll released(out, 1);
    released.on_data(out.chunk("x"));
    released.on_eof();
    uv_run(&loop, UV_RUN_DEFAULT); // the timer fires once, then nothing keeps the loop alive
    EXPECT_EQ(out.got, Got({"x", "<eof>"}));

    Recorder out2(&loop);
    {
      HoldAll flushed(out2, 60'000);
      flushed.on_data(out2.chunk("y"));
      flushed.on_eof();
      flushed.flush(); // removal: everything now, and the timer must not fire later
      EXPECT_EQ(out2.got, Got({"y", "<eof>"}));
    }
    uv_run(&loop, UV_RUN_DEFAULT); // returns at once: the stopped timer is only being closed
    EXPECT_EQ(out2.got, Got({"y", "<eof>"}));
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  EXPECT_EQ(uv_loop_close(&loop), 0);
}

} // namespace
} // namespace faultline::toxics
