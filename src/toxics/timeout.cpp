// timeout: a black hole. Data is dropped as Toxiproxy's timeout drops it (a write a client gave
// up on must not land after the fact); `timeout` ms after the toxic became active on the
// connection, the connection is closed. timeout 0 drops forever. A FIN passes, so a session
// ends when its client does. Nothing is held, so the source is always read: no backpressure
// pause can hide the client's close.
//
// Deviation from Toxiproxy 2.x, on purpose: the timer runs from activation, not from the last
// chunk swallowed, so a client that keeps retrying is still cut off after `timeout`.

#include "toxics/registry.h"
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

  void on_data(Chunk c) override { out_.dropped(c.len); }

private:
  uv::Timer timer_;
};

} // namespace

const ToxicType<StageToxic<TimeoutParams, TimeoutStage>> kTimeout{"timeout", 40, {
    int_attr("timeout", &TimeoutParams::timeout_ms, "ms", {0, 86'400'000}, 0,
             "the connection closes this long after the toxic became active on it; 0: never"),
}};

} // namespace faultline::toxics
