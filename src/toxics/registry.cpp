#include "toxics/types.h"

namespace faultline::toxics {

std::span<const TypeEntry> builtin_types() {
  static const TypeEntry types[] = {
      {"latency", make_latency},       {"bandwidth", make_bandwidth},
      {"slow_close", make_slow_close}, {"timeout", make_timeout},
      {"reset_peer", make_reset_peer}, {"slicer", make_slicer},
      {"limit_data", make_limit_data},
  };
  return types;
}

} // namespace faultline::toxics
