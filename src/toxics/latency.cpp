// latency: delay every chunk by `latency` ms plus up to ±`jitter` ms (Toxiproxy's semantics:
// each chunk waits from the moment it arrived, so a steady stream is shifted, not throttled).

#include <deque>

#include "toxics/types.h"
#include "uv/timer.h"

namespace faultline::toxics {

namespace {

struct LatencyParams {
  int64_t latency_ms;
  int64_t jitter_ms;
};

class LatencyStage final : public Stage {
public:
  LatencyStage(Output& out, LatencyParams p) : Stage(out), p_(p), timer_(out.loop()) {}

  void on_data(Chunk c) override {
    queue_.push_back({uv_now(out_.loop()) + delay(), std::move(c), false});
    arm();
  }
  void on_eof() override {
    // The FIN keeps its place behind the data it followed.
    uint64_t due = queue_.empty() ? uv_now(out_.loop()) : queue_.back().due_ms;
    queue_.push_back({due, {}, true});
    arm();
  }
  void flush() override {
    timer_.stop();
    while (!queue_.empty()) pop_front();
  }

private:
  struct Item {
    uint64_t due_ms;
    Chunk chunk;
    bool eof;
  };
  uint64_t delay() {
    int64_t d = p_.latency_ms;
    if (p_.jitter_ms > 0) {
      std::uniform_int_distribution<int64_t> j(-p_.jitter_ms, p_.jitter_ms);
      d += j(out_.rng());
    }
    return d < 0 ? 0 : static_cast<uint64_t>(d);
  }
  void arm() {
    if (timer_.active() || queue_.empty()) return;
    uint64_t now = uv_now(out_.loop());
    uint64_t due = queue_.front().due_ms;
    timer_.start(due > now ? due - now : 0, [this] { on_timer(); });
  }
  void on_timer() {
    uint64_t now = uv_now(out_.loop());
    // Jitter may make a later chunk due earlier; order is kept by releasing strictly in order.
    while (!queue_.empty() && queue_.front().due_ms <= now) pop_front();
    arm();
  }
  void pop_front() {
    Item it = std::move(queue_.front());
    queue_.pop_front();
    if (it.eof) out_.eof();
    else out_.data(std::move(it.chunk));
  }

  LatencyParams p_;
  uv::Timer timer_;
  std::deque<Item> queue_;
};

class Latency final : public ToxicImpl {
public:
  explicit Latency(LatencyParams p) : p_(p) {}
  nlohmann::json attributes() const override {
    return {{"latency", p_.latency_ms}, {"jitter", p_.jitter_ms}};
  }
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<LatencyStage>(out, p_);
  }

private:
  LatencyParams p_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_latency(const nlohmann::json& attrs) {
  LatencyParams p;
  p.latency_ms = attr_int(attrs, "latency", 0, 0, 3'600'000);
  p.jitter_ms = attr_int(attrs, "jitter", 0, 0, 3'600'000);
  return std::make_shared<Latency>(p);
}

} // namespace faultline::toxics
