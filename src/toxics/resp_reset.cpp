// resp_reset: reset the connection (RST) when a matching command arrives, before it is
// forwarded (phase "before": not executed), or once Redis replied (phase "after": executed,
// reply lost — the ambiguous failure idempotency and retries must survive).

#include "toxics/resp_rule.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

class RespReset final : public RespToxic {
public:
  RespReset(RespFilter f, bool after) : RespToxic(std::move(f)), after_(after) {}

protected:
  nlohmann::json own_attributes() const override { return {{"phase", after_ ? "after" : "before"}}; }
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

std::shared_ptr<const ToxicImpl> make_resp_reset(const nlohmann::json& attrs) {
  bool after = attr_choice(attrs, "phase", "before", {"before", "after"}) == "after";
  return std::make_shared<RespReset>(RespFilter(attrs), after);
}

} // namespace faultline::toxics
