// resp_delay: hold a matching command before Redis sees it (phase "request"), or hold its
// reply (phase "reply"), by `delay` ms ± `jitter` ms. Later commands and replies wait behind
// it, as the protocol requires.

#include "toxics/resp_rule.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

class RespDelay final : public RespToxic {
public:
  RespDelay(RespFilter f, bool reply, int64_t delay_ms, int64_t jitter_ms)
      : RespToxic(std::move(f)), reply_(reply), delay_ms_(delay_ms), jitter_ms_(jitter_ms) {}

protected:
  nlohmann::json own_attributes() const override {
    return {{"phase", reply_ ? "reply" : "request"}, {"delay", delay_ms_}, {"jitter", jitter_ms_}};
  }
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !reply_ || !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext& ctx) const override {
    RespAction a;
    a.kind = reply_ ? RespActionKind::DelayReply : RespActionKind::DelayRequest;
    int64_t d = delay_ms_;
    if (jitter_ms_ > 0 && ctx.rng) {
      std::uniform_int_distribution<int64_t> j(-jitter_ms_, jitter_ms_);
      d += j(*ctx.rng);
    }
    a.delay_ms = d < 0 ? 0 : static_cast<uint64_t>(d);
    return a;
  }

private:
  bool reply_;
  int64_t delay_ms_, jitter_ms_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_resp_delay(const nlohmann::json& attrs) {
  bool reply = attr_choice(attrs, "phase", "request", {"request", "reply"}) == "reply";
  int64_t delay = attr_int(attrs, "delay", 0, 0, 3'600'000);
  int64_t jitter = attr_int(attrs, "jitter", 0, 0, 3'600'000);
  return std::make_shared<RespDelay>(RespFilter(attrs), reply, delay, jitter);
}

} // namespace faultline::toxics
