#include "toxics/types.h"

namespace faultline::toxics {

std::span<const TypeEntry> builtin_types() {
  static const TypeEntry types[] = {
      {"latency", make_latency},
  };
  return types;
}

} // namespace faultline::toxics
