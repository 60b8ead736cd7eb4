// bandwidth: pass data at `rate` KB/s (Toxiproxy's unit: 1 KB = 1000 bytes, so n bytes cost
// n/rate ms). A piece is handed on once its last byte "has crossed the link": at
// max(arrival, previous release) + cost. Release times are deadlines on the loop clock kept in
// nanoseconds, so the ~1 ms granularity of libuv timers does not accumulate into a slower rate
// (Toxiproxy carries the same error forward in its `sleep` variable).
//
// Chunks are released in pieces of at most 10 ms worth of bytes, so the output is smooth rather
// than a burst per 64 KB read (Toxiproxy slices at 100 ms; the average rate is the same).
//
// rate 0: nothing passes until the toxic is removed or updated, then everything held goes on in
// order. This is what Toxiproxy does too (its slicing loop never finishes with a rate of 0, and
// an interrupt hands the chunk on).

#include <algorithm>
#include <deque>

#include "toxics/types.h"
#include "uv/timer.h"

namespace faultline::toxics {

namespace {

struct BandwidthParams {
  int64_t rate_kbps; // bytes per millisecond
};

class BandwidthStage final : public Stage {
public:
  BandwidthStage(Output& out, BandwidthParams p)
      : Stage(out), p_(p), timer_(out.loop()),
        piece_max_(static_cast<uint32_t>(std::clamp<int64_t>(p.rate_kbps * 10, 1, 1 << 30))) {}

  void on_data(Chunk c) override {
    if (c.len == 0) return;
    if (queue_.empty()) free_at_ns_ = std::max(free_at_ns_, now_ns());
    queue_.push_back({std::move(c), false});
    pump();
  }
  void on_eof() override {
    if (queue_.empty()) free_at_ns_ = std::max(free_at_ns_, now_ns());
    queue_.push_back({{}, true});
    pump();
  }
  void flush() override {
    timer_.stop();
    while (!queue_.empty()) {
      Item it = std::move(queue_.front());
      queue_.pop_front();
      if (it.eof) out_.eof();
      else out_.data(std::move(it.chunk));
    }
  }

private:
  struct Item {
    Chunk chunk;
    bool eof;
  };
  uint64_t now_ns() const { return uv_now(out_.loop()) * 1'000'000ull; }
  uint64_t cost_ns(uint32_t bytes) const {
    return static_cast<uint64_t>(bytes) * 1'000'000ull / static_cast<uint64_t>(p_.rate_kbps);
  }

  void pump() {
    if (p_.rate_kbps == 0 || timer_.active()) return;
    uint64_t now = now_ns();
    while (!queue_.empty()) {
      Item& head = queue_.front();
      if (head.eof) {
        if (free_at_ns_ > now) return arm(free_at_ns_ - now);
        queue_.pop_front();
        out_.eof();
        continue;
      }
      uint32_t n = std::min(head.chunk.len, piece_max_);
      uint64_t due = free_at_ns_ + cost_ns(n);
      if (due > now) return arm(due - now);
      free_at_ns_ = due;
      Chunk piece;
      if (n == head.chunk.len) {
        piece = std::move(head.chunk);
        queue_.pop_front();
      } else {
        piece = head.chunk.take_front(n);
      }
      out_.data(std::move(piece));
    }
  }
  void arm(uint64_t wait_ns) {
    // Round up: libuv fires a timer no earlier than its timeout on the same clock.
    timer_.start((wait_ns + 999'999) / 1'000'000, [this] { pump(); });
  }

  BandwidthParams p_;
  uv::Timer timer_;
  uint32_t piece_max_;
  uint64_t free_at_ns_ = 0; // when the link has finished sending what was released so far
  std::deque<Item> queue_;
};

class Bandwidth final : public ToxicImpl {
public:
  explicit Bandwidth(BandwidthParams p) : p_(p) {}
  nlohmann::json attributes() const override { return {{"rate", p_.rate_kbps}}; }
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<BandwidthStage>(out, p_);
  }

private:
  BandwidthParams p_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_bandwidth(const nlohmann::json& attrs) {
  BandwidthParams p;
  p.rate_kbps = attr_int(attrs, "rate", 0, 0, 100'000'000); // up to 100 GB/s
  return std::make_shared<Bandwidth>(p);
}

} // namespace faultline::toxics
