// resp_hang: the matching command executes, but its reply (and every later one on that
// connection) is never delivered: a client-side read timeout on exactly that command.

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct RespHangParams {
  FilterParams filter;
};

class RespHang final : public RespToxic<RespHangParams> {
public:
  using RespToxic::RespToxic;

protected:
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

const ToxicType<RespHang> kRespHang{"resp_hang", 140, with_filter<RespHangParams>({})};

} // namespace faultline::toxics
