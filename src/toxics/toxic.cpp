#include "toxics/toxic.h"

#include <cctype>

#include <fmt/format.h>

namespace faultline::toxics {

std::string_view to_string(Stream s) { return s == Stream::Upstream ? "upstream" : "downstream"; }

bool parse_stream(std::string_view text, Stream& out) {
  if (text == "upstream") out = Stream::Upstream;
  else if (text == "downstream") out = Stream::Downstream;
  else return false;
  return true;
}

namespace {

// Keeps what a URL path segment carries as is; drops the rest.
std::string url_safe(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.' ||
        c == '+')
      out += c;
  }
  return out;
}

// The word that says which fault a RESP toxic injects: the preset, the error's code, the
// reply's kind or the phase; empty when the type has none (resp_hang).
std::string kind_word(const nlohmann::json& a) {
  auto str = [&](const char* k) -> std::string {
    auto it = a.find(k);
    return it != a.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  if (std::string v = str("preset"); !v.empty()) return v;
  if (std::string v = str("error"); !v.empty()) {
    std::string code = v.substr(0, v.find(' '));
    for (char& c : code) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return code;
  }
  if (std::string v = str("reply"); !v.empty()) {
    std::string kind = v.substr(0, v.find(':'));
    // A raw RESP value ("*2\r\n...") has no short name.
    return !kind.empty() && std::isalpha(static_cast<unsigned char>(kind[0])) ? kind : "raw";
  }
  return str("phase");
}

} // namespace

std::string default_name(std::string_view type, Stream stream, const ToxicImpl* impl) {
  if (!impl || !impl->resp_rule()) return fmt::format("{}_{}", type, to_string(stream));
  nlohmann::json a = impl->attributes();
  std::string name(type);
  if (std::string k = url_safe(kind_word(a)); !k.empty()) name += "_" + k;
  auto it = a.find("commands");
  if (it != a.end() && it->is_array() && !it->empty()) {
    std::string cmds;
    size_t n = 0;
    for (const auto& c : *it) {
      if (!c.is_string()) continue;
      if (++n > 3) {
        cmds += "+more";
        break;
      }
      std::string w = url_safe(c.get<std::string>());
      if (w.empty()) w = c.get<std::string>().rfind('@', 0) == 0 ? "cat" : "cmd";
      cmds += (cmds.empty() ? "" : "+") + w;
    }
    if (!cmds.empty()) name += "_" + cmds;
  }
  return name;
}

nlohmann::json Toxic::to_json() const {
  return {{"name", name},
          {"type", type},
          {"stream", std::string(to_string(stream))},
          {"toxicity", toxicity},
          {"attributes", impl ? impl->attributes() : nlohmann::json::object()}};
}

} // namespace faultline::toxics
