// resp_hang: the matching command executes, but its reply (and every later one on that
// connection) is never delivered: a client-side read timeout on exactly that command.

#include "toxics/resp_rule.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

class RespHang final : public RespToxic {
public:
  using RespToxic::RespToxic;

protected:
  nlohmann::json own_attributes() const override { return nlohmann::json::object(); }
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    RespAction a;
    a.kind = RespActionKind::Hang;
    return a;
  }
};

} // namespace

std::shared_ptr<const ToxicImpl> make_resp_hang(const nlohmann::json& attrs) {
  return std::make_shared<RespHang>(RespFilter(attrs));
}

} // namespace faultline::toxics
