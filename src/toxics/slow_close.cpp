// slow_close: data passes untouched; the FIN (the source's eof) is handed on `delay` ms after it
// arrived. As in Toxiproxy, the delay counts from the moment the eof reaches this toxic.

#include "toxics/held_queue.h"
#include "toxics/types.h"

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

class SlowClose final : public ToxicImpl {
public:
  explicit SlowClose(SlowCloseParams p) : p_(p) {}
  nlohmann::json attributes() const override { return {{"delay", p_.delay_ms}}; }
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<SlowCloseStage>(out, p_);
  }

private:
  SlowCloseParams p_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_slow_close(const nlohmann::json& attrs) {
  SlowCloseParams p;
  p.delay_ms = attr_int(attrs, "delay", 0, 0, 3'600'000);
  return std::make_shared<SlowClose>(p);
}

} // namespace faultline::toxics
