// timeout: a black hole. Nothing passes (data and eof are held, in order); `timeout` ms after the
// toxic became active on the connection, the connection is closed. timeout 0 holds forever.
// When the toxic is removed or updated, everything held is handed on in order.
//
// Deviations from Toxiproxy 2.x, on purpose: Toxiproxy drops the data it swallows, closes the
// connection when the toxic is removed, and restarts its timer on every chunk it swallows.
// Here data is held (so a test can lift the black hole and see the reply arrive), and the timer
// runs from activation, so a client that keeps retrying is still cut off after `timeout`.
// Held bytes stay counted by the pipe, so a long black hole stops reading at the high watermark
// instead of buffering without bound.

#include <deque>

#include "toxics/types.h"
#include "uv/timer.h"

namespace faultline::toxics {

namespace {

struct TimeoutParams {
  int64_t timeout_ms;
};

class TimeoutStage final : public Stage {
public:
  TimeoutStage(Output& out, TimeoutParams p) : Stage(out), timer_(out.loop()) {
    if (p.timeout_ms > 0)
      timer_.start(static_cast<uint64_t>(p.timeout_ms), [this] { out_.close_session(); });
  }

  void on_data(Chunk c) override { queue_.push_back({std::move(c), false}); }
  void on_eof() override { queue_.push_back({{}, true}); }
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
  uv::Timer timer_;
  std::deque<Item> queue_;
};

class Timeout final : public ToxicImpl {
public:
  explicit Timeout(TimeoutParams p) : p_(p) {}
  nlohmann::json attributes() const override { return {{"timeout", p_.timeout_ms}}; }
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<TimeoutStage>(out, p_);
  }

private:
  TimeoutParams p_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_timeout(const nlohmann::json& attrs) {
  TimeoutParams p;
  p.timeout_ms = attr_int(attrs, "timeout", 0, 0, 86'400'000);
  return std::make_shared<Timeout>(p);
}

} // namespace faultline::toxics
