// slow_close: data passes untouched; the FIN (the source's eof) is handed on `delay` ms after it
// arrived. As in Toxiproxy, the delay counts from the moment the eof reaches this toxic.

#include "toxics/held_queue.h"
#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct SlowCloseParams {
  int64_t delay_ms;
};

class SlowCloseStage final : public HoldingStage {
public:
  SlowCloseStage(Output& out, SlowCloseParams p) : HoldingStage(out), p_(p) {}

  // Data passes (Stage::on_data); only the eof is held.
  void on_eof() override {
    if (p_.delay_ms == 0) {
      out_.eof();
      return;
    }
    held_.hold_eof();
    timer_.start(static_cast<uint64_t>(p_.delay_ms), [this] { held_.release_front(); });
  }

private:
  SlowCloseParams p_;
};

} // namespace

const ToxicType<StageToxic<SlowCloseParams, SlowCloseStage>> kSlowClose{"slow_close", 30, {
    int_attr("delay", &SlowCloseParams::delay_ms, "ms", {0, 3'600'000}, 0,
             "how long the FIN waits, counted from its arrival; data is not delayed"),
}};

} // namespace faultline::toxics
