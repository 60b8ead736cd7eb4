// resp_close: like resp_reset, with a clean FIN: close the connection before a matching
// command is forwarded (phase "before"), or once Redis replied, dropping the reply ("after").
// Replies already on their way to the client are delivered first.

#include "toxics/resp_rule.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

class RespClose final : public RespToxic {
public:
  RespClose(RespFilter f, bool after) : RespToxic(std::move(f)), after_(after) {}

protected:
  nlohmann::json own_attributes() const override { return {{"phase", after_ ? "after" : "before"}}; }
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

std::shared_ptr<const ToxicImpl> make_resp_close(const nlohmann::json& attrs) {
  bool after = attr_choice(attrs, "phase", "before", {"before", "after"}) == "after";
  return std::make_shared<RespClose>(RespFilter(attrs), after);
}

} // namespace faultline::toxics
