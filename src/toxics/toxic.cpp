#include "toxics/toxic.h"

namespace faultline::toxics {

std::string_view to_string(Stream s) { return s == Stream::Upstream ? "upstream" : "downstream"; }

bool parse_stream(std::string_view text, Stream& out) {
  if (text == "upstream") out = Stream::Upstream;
  else if (text == "downstream") out = Stream::Downstream;
  else return false;
  return true;
}

nlohmann::json Toxic::to_json() const {
  return {{"name", name},
          {"type", type},
          {"stream", std::string(to_string(stream))},
          {"toxicity", toxicity},
          {"attributes", impl ? impl->attributes() : nlohmann::json::object()}};
}

} // namespace faultline::toxics
