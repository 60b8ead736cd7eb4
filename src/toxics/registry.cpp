#include "toxics/types.h"

namespace faultline::toxics {

std::span<const TypeEntry> builtin_types() {
  static const TypeEntry types[] = {
      {"latency", make_latency},       {"bandwidth", make_bandwidth},
      {"slow_close", make_slow_close}, {"timeout", make_timeout},
      {"reset_peer", make_reset_peer}, {"slicer", make_slicer},
      {"limit_data", make_limit_data},
      // RESP-aware (faultline's own): act on chosen commands.
      {"resp_error", make_resp_error}, {"resp_reply", make_resp_reply},
      {"resp_delay", make_resp_delay}, {"resp_hang", make_resp_hang},
      {"resp_reset", make_resp_reset}, {"resp_close", make_resp_close},
      {"truncate", make_truncate},
  };
  return types;
}

} // namespace faultline::toxics
