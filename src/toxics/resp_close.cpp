// resp_close: like resp_reset, with a clean FIN: close the connection before a matching
// command is forwarded (phase "before"), or once Redis replied, dropping the reply ("after").
// Replies already on their way to the client are delivered first.

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct RespCloseParams {
  std::string phase;
  FilterParams filter;
};

class RespClose final : public RespToxic<RespCloseParams> {
public:
  RespClose(RespCloseParams p, const AttrTable<RespCloseParams>& attrs)
      : RespToxic(std::move(p), attrs), after_(p_.phase == "after") {}

protected:
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !after_ || !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    RespAction a;
    a.kind = after_ ? RespActionKind::CloseAfter : RespActionKind::CloseBefore;
    return a;
  }

private:
  bool after_;
};

} // namespace

const ToxicType<RespClose> kRespClose{"resp_close", 160, with_filter<RespCloseParams>({
    choice_attr("phase", &RespCloseParams::phase, {"before", "after"}, "before",
                "`before`: the command is not sent (not executed); `after`: it is sent and "
                "executed, its reply dropped"),
})};

} // namespace faultline::toxics
