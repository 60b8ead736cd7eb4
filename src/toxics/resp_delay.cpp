// resp_delay: hold a matching command before Redis sees it (phase "request"), or hold its
// reply (phase "reply"), by `delay` ms ± `jitter` ms. Later commands and replies wait behind
// it, as the protocol requires.

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct RespDelayParams {
  std::string phase;
  int64_t delay_ms;
  int64_t jitter_ms;
  FilterParams filter;
};

class RespDelay final : public RespToxic<RespDelayParams> {
public:
  RespDelay(RespDelayParams p, const AttrTable<RespDelayParams>& attrs)
      : RespToxic(std::move(p), attrs), reply_(p_.phase == "reply") {}

protected:
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !reply_ || !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext& ctx) const override {
    RespAction a;
    a.kind = reply_ ? RespActionKind::DelayReply : RespActionKind::DelayRequest;
    int64_t d = p_.delay_ms;
    if (p_.jitter_ms > 0 && ctx.rng) {
      std::uniform_int_distribution<int64_t> j(-p_.jitter_ms, p_.jitter_ms);
      d += j(*ctx.rng);
    }
    a.delay_ms = d < 0 ? 0 : static_cast<uint64_t>(d);
    return a;
  }

private:
  bool reply_;
};

} // namespace

const ToxicType<RespDelay> kRespDelay{"resp_delay", 130, with_filter<RespDelayParams>({
    choice_attr("phase", &RespDelayParams::phase, {"request", "reply"}, "request",
                "`request`: hold the command before Redis sees it; `reply`: hold its reply"),
    int_attr("delay", &RespDelayParams::delay_ms, "ms", {0, 3'600'000}, 0,
             "how long; later commands and replies on the connection wait behind it"),
    int_attr("jitter", &RespDelayParams::jitter_ms, "ms", {0, 3'600'000}, 0,
             "each delay varies by up to ± this"),
})};

} // namespace faultline::toxics
