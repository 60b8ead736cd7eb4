// latency: delay every chunk by `latency` ms plus up to ±`jitter` ms (Toxiproxy's semantics:
// each chunk waits from the moment it arrived, so a steady stream is shifted, not throttled).

#include "toxics/held_queue.h"
#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct LatencyParams {
  int64_t latency_ms;
  int64_t jitter_ms;
};

class LatencyStage final : public HoldingStage {
public:
  LatencyStage(Output& out, LatencyParams p) : HoldingStage(out), p_(p) {}

  void on_data(Chunk c) override {
    held_.hold(std::move(c), uv_now(out_.loop()) + delay());
    arm();
  }
  void on_eof() override {
    // The FIN keeps its place behind the data it followed.
    held_.hold_eof(held_.empty() ? uv_now(out_.loop()) : held_.back().due);
    arm();
  }

private:
  uint64_t delay() {
    int64_t d = p_.latency_ms;
    if (p_.jitter_ms > 0) {
      std::uniform_int_distribution<int64_t> j(-p_.jitter_ms, p_.jitter_ms);
      d += j(out_.rng());
    }
    return d < 0 ? 0 : static_cast<uint64_t>(d);
  }
  void arm() {
    if (timer_.active() || held_.empty()) return;
    uint64_t now = uv_now(out_.loop());
    uint64_t due = held_.front().due;
    timer_.start(due > now ? due - now : 0, [this] {
      held_.release_due(uv_now(out_.loop()));
      arm();
    });
  }

  LatencyParams p_;
};

} // namespace

const ToxicType<StageToxic<LatencyParams, LatencyStage>> kLatency{"latency", 10, {
    int_attr("latency", &LatencyParams::latency_ms, "ms", {0, 3'600'000}, 0,
             "added to each chunk's delivery, counted from its arrival"),
    int_attr("jitter", &LatencyParams::jitter_ms, "ms", {0, 3'600'000}, 0,
             "each chunk's delay varies by up to ± this (uniformly, per chunk)"),
}};

} // namespace faultline::toxics
