// resp_reset and resp_close: end the connection when a matching command arrives, before it is
// forwarded (phase "before": not executed), or once Redis replied (phase "after": executed,
// reply lost — the ambiguous failure idempotency and retries must survive). resp_reset ends it
// with an RST (ECONNRESET), resp_close with a clean FIN; replies already on their way to the
// client are delivered first. One class, two types: they differ only in how the connection ends.

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct RespDisconnectParams {
  std::string phase{};
  FilterParams filter{};
  bool reset = false; // not an attribute: set by the type (resp_reset, resp_close)
};

class RespDisconnect final : public RespToxic<RespDisconnectParams> {
public:
  RespDisconnect(RespDisconnectParams p, const AttrTable<RespDisconnectParams>& attrs)
      : RespToxic(std::move(p), attrs), after_(p_.phase == "after") {}

protected:
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !after_ || !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    using K = RespActionKind;
    RespAction a;
    if (p_.reset) a.kind = after_ ? K::ResetAfter : K::ResetBefore;
    else a.kind = after_ ? K::CloseAfter : K::CloseBefore;
    return a;
  }

private:
  bool after_;
};

AttrTable<RespDisconnectParams> attrs() {
  return with_filter<RespDisconnectParams>({
      choice_attr("phase", &RespDisconnectParams::phase, {"before", "after"}, "before",
                  "`before`: the command is not sent (not executed); `after`: it is sent and "
                  "executed, its reply dropped"),
  });
}

} // namespace

const ToxicType<RespDisconnect> kRespReset{"resp_reset", 150, attrs(), {.reset = true}};
const ToxicType<RespDisconnect> kRespClose{"resp_close", 160, attrs(), {.reset = false}};

} // namespace faultline::toxics
