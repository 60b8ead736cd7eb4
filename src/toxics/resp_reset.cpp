// resp_reset: reset the connection (RST) when a matching command arrives, before it is
// forwarded (phase "before": not executed), or once Redis replied (phase "after": executed,
// reply lost — the ambiguous failure idempotency and retries must survive).

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct RespResetParams {
  std::string phase;
  FilterParams filter;
};

class RespReset final : public RespToxic<RespResetParams> {
public:
  RespReset(RespResetParams p, const AttrTable<RespResetParams>& attrs)
      : RespToxic(std::move(p), attrs), after_(p_.phase == "after") {}

protected:
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !after_ || !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    RespAction a;
    a.kind = after_ ? RespActionKind::ResetAfter : RespActionKind::ResetBefore;
    return a;
  }

private:
  bool after_;
};

} // namespace

const ToxicType<RespReset> kRespReset{"resp_reset", 150, with_filter<RespResetParams>({
    choice_attr("phase", &RespResetParams::phase, {"before", "after"}, "before",
                "`before`: the command is not sent (not executed); `after`: it is sent and "
                "executed, its reply dropped"),
})};

} // namespace faultline::toxics
