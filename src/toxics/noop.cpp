// noop: passes everything through unchanged, as Toxiproxy's does. Clients and test suites use it
// to check that toxics can be added, listed and removed without changing the traffic.

#include "toxics/registry.h"

namespace faultline::toxics {

namespace {

struct NoopParams {};

class NoopStage final : public Stage {
public:
  NoopStage(Output& out, const NoopParams&) : Stage(out) {}
};

} // namespace

const ToxicType<StageToxic<NoopParams, NoopStage>> kNoop{"noop", 80, {}};

} // namespace faultline::toxics
