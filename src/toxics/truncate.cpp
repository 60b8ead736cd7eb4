// truncate: the matching command executes; only the first `bytes` bytes of its reply reach the
// client, then the connection is reset (a reply cut mid-frame, as by a dying server).

#include "toxics/resp_rule.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

class Truncate final : public RespToxic {
public:
  Truncate(RespFilter f, int64_t bytes) : RespToxic(std::move(f)), bytes_(bytes) {}

protected:
  nlohmann::json own_attributes() const override { return {{"bytes", bytes_}}; }
  bool applies(const resp::RequestFrame&, const RespContext& ctx) const override {
    return !no_paired_reply(ctx);
  }
  RespAction act(const resp::RequestFrame&, const RespContext&) const override {
    RespAction a;
    a.kind = RespActionKind::Truncate;
    a.bytes = static_cast<uint64_t>(bytes_);
    return a;
  }

private:
  int64_t bytes_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_truncate(const nlohmann::json& attrs) {
  return std::make_shared<Truncate>(RespFilter(attrs), attr_int(attrs, "bytes", 0, 0, INT64_MAX));
}

} // namespace faultline::toxics
