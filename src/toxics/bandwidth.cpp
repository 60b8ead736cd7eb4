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

#include "toxics/held_queue.h"
#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct BandwidthParams {
  int64_t rate_kbps; // bytes per millisecond
};

class BandwidthStage final : public HoldingStage {
public:
  BandwidthStage(Output& out, BandwidthParams p)
      : HoldingStage(out), p_(p),
        piece_max_(static_cast<uint32_t>(std::clamp<int64_t>(p.rate_kbps * 10, 1, 1 << 30))) {}

  void on_data(Chunk c) override {
    if (c.len == 0) return;
    if (held_.empty()) free_at_ns_ = std::max(free_at_ns_, now_ns());
    held_.hold(std::move(c));
    pump();
  }
  void on_eof() override {
    if (held_.empty()) free_at_ns_ = std::max(free_at_ns_, now_ns());
    held_.hold_eof();
    pump();
  }

private:
  uint64_t now_ns() const { return uv_now(out_.loop()) * 1'000'000ull; }
  uint64_t cost_ns(uint32_t bytes) const {
    return static_cast<uint64_t>(bytes) * 1'000'000ull / static_cast<uint64_t>(p_.rate_kbps);
  }

  void pump() {
    if (p_.rate_kbps == 0 || timer_.active()) return;
    uint64_t now = now_ns();
    while (!held_.empty()) {
      HeldQueue::Item& head = held_.front();
      if (head.eof) {
        if (free_at_ns_ > now) return arm(free_at_ns_ - now);
        held_.release_front();
        continue;
      }
      uint32_t n = std::min(head.chunk.len, piece_max_);
      uint64_t due = free_at_ns_ + cost_ns(n);
      if (due > now) return arm(due - now);
      free_at_ns_ = due;
      if (n == head.chunk.len) held_.release_front();
      else out_.data(head.chunk.take_front(n));
    }
  }
  void arm(uint64_t wait_ns) {
    // Round up: libuv fires a timer no earlier than its timeout on the same clock.
    timer_.start((wait_ns + 999'999) / 1'000'000, [this] { pump(); });
  }

  BandwidthParams p_;
  uint32_t piece_max_;
  uint64_t free_at_ns_ = 0; // when the link has finished sending what was released so far
};

} // namespace

const ToxicType<StageToxic<BandwidthParams, BandwidthStage>> kBandwidth{"bandwidth", 20, {
    int_attr("rate", &BandwidthParams::rate_kbps, "KB/s", {0, 100'000'000}, 0,
             "the stream's pace, 1 KB = 1000 bytes; 0 holds everything until the toxic goes"),
}};

} // namespace faultline::toxics
