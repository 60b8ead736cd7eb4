// sentinel_stale: on a sentinel's proxy (sentinel mode), that sentinel's answers about the
// master keep naming the master it named when the toxic was added: a sentinel that has not seen
// a failover. The toxic itself passes bytes through; the deployment's rewriter (topology/front.h)
// notes the master when the toxic is added and answers with it while the toxic is there
// (ToxicImpl::needs_deployment).

#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct SentinelStaleParams {};

class PassStage final : public Stage {
public:
  PassStage(Output& out, const SentinelStaleParams&) : Stage(out) {}
};

class SentinelStale final : public ParamToxic<SentinelStaleParams> {
public:
  using ParamToxic::ParamToxic;
  std::unique_ptr<Stage> make_stage(Output& out) const override {
    return std::make_unique<PassStage>(out, p_);
  }
  bool needs_deployment() const override { return true; }
};

} // namespace

const ToxicType<SentinelStale> kSentinelStale{"sentinel_stale", 180, {}};

} // namespace faultline::toxics
