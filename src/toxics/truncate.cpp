// truncate: the matching command executes; only the first `bytes` bytes of its reply reach the
// client, then the connection is reset (a reply cut mid-frame, as by a dying server).

#include "toxics/resp_rule.h"

namespace faultline::toxics {

namespace {

struct TruncateParams {
  int64_t bytes;
  FilterParams filter;
};

class Truncate final : public RespToxic<TruncateParams> {
public:
  using RespToxic::RespToxic;

protected:
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    RespAction a;
    a.kind = RespActionKind::Truncate;
    a.bytes = static_cast<uint64_t>(p_.bytes);
    return a;
  }
};

} // namespace

const ToxicType<Truncate> kTruncate{"truncate", 170, with_filter<TruncateParams>({
    int_attr("bytes", &TruncateParams::bytes, "bytes", {0, INT64_MAX}, 0,
             "how much of the reply reaches the client before the reset"),
})};

} // namespace faultline::toxics
