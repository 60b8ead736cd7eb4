// resp_error: answer a matching command with a Redis error, without sending it to Redis.
// `preset` writes Redis's own wording (and picks the commands Redis would refuse); `error` is
// any text. MOVED/ASK carry the key's real hash slot (CRC16, hash tags honoured).

#include <fmt/format.h>

#include "toxics/resp_rule.h"
#include "toxics/slot.h"
#include "toxics/types.h"

namespace faultline::toxics {

namespace {

struct Preset {
  const char* name;
  const char* text; // without the leading '-' and the CRLF
  std::vector<std::string> default_commands;
};

const std::vector<Preset>& presets() {
  static const std::vector<Preset> all = {
      {"loading", "LOADING Redis is loading the dataset in memory", {}},
      {"readonly", "READONLY You can't write against a read only replica.", {"@write"}},
      {"oom", "OOM command not allowed when used memory > 'maxmemory'.", {"@denyoom"}},
      {"busy",
       "BUSY Redis is busy running a script. You can only call SCRIPT KILL or SHUTDOWN NOSAVE.",
       {}},
      {"noscript", "NOSCRIPT No matching script. Please use EVAL.",
       {"EVALSHA", "EVALSHA_RO", "FCALL", "FCALL_RO"}},
      {"masterdown",
       "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.", {}},
      {"tryagain", "TRYAGAIN Multiple keys request during rehashing of slot", {}},
      {"clusterdown", "CLUSTERDOWN The cluster is down", {}},
      {"noauth", "NOAUTH Authentication required.", {}},
      {"wrongpass", "WRONGPASS invalid username-password pair or user is disabled.", {}},
      {"max_clients", "ERR max number of clients reached", {}},
      {"unblocked", "UNBLOCKED client unblocked via CLIENT UNBLOCK", {"@blocking"}},
      {"moved", "MOVED", {}},
      {"ask", "ASK", {}},
  };
  return all;
}

const Preset* find_preset(const std::string& name) {
  for (const auto& p : presets())
    if (name == p.name) return &p;
  return nullptr;
}

class RespError final : public RespToxic {
public:
  RespError(RespFilter f, std::string preset, std::string text, std::string address)
      : RespToxic(std::move(f)), preset_(std::move(preset)), text_(std::move(text)),
        address_(std::move(address)) {}

protected:
  nlohmann::json own_attributes() const override {
    nlohmann::json a = nlohmann::json::object();
    if (!preset_.empty()) a["preset"] = preset_;
    else a["error"] = text_;
    if (preset_ == "moved" || preset_ == "ask") a["address"] = address_;
    return a;
  }
  bool applies(const resp::RequestFrame& f, const RespContext& ctx) const override {
    if (ctx.monitoring) return false; // MONITOR streams lines; an error would be read as one
    // A cluster redirects only commands with keys; a keyless one is served where it is.
    if ((preset_ == "moved" || preset_ == "ask") && !f.has_key) return false;
    return true;
  }
  RespAction act(const resp::RequestFrame& f, const RespContext&) const override {
    RespAction a;
    a.kind = RespActionKind::Inject;
    std::string line = text_;
    if (preset_ == "moved" || preset_ == "ask") {
      unsigned slot = key_hash_slot(f.key.data);
      line = fmt::format("{} {} {}", preset_ == "moved" ? "MOVED" : "ASK", slot, address_);
    }
    a.reply = "-" + line + "\r\n";
    return a;
  }

private:
  std::string preset_, text_, address_;
};

} // namespace

std::shared_ptr<const ToxicImpl> make_resp_error(const nlohmann::json& attrs) {
  std::string preset, text, address = "127.0.0.1:6379";
  std::vector<std::string> defaults;
  auto p = attrs.find("preset");
  auto e = attrs.find("error");
  if (p != attrs.end() && !p->is_null()) {
    if (!p->is_string()) throw ToxicError("attribute 'preset' must be a string");
    preset = p->get<std::string>();
    const Preset* pr = find_preset(preset);
    if (!pr) {
      std::string names;
      for (const auto& x : presets()) names += (names.empty() ? "" : ", ") + std::string(x.name);
      throw ToxicError(fmt::format("attribute 'preset': unknown preset '{}' (one of: {})", preset,
                                   names));
    }
    text = pr->text;
    defaults = pr->default_commands;
  } else if (e != attrs.end() && !e->is_null()) {
    if (!e->is_string() || e->get<std::string>().empty())
      throw ToxicError("attribute 'error' must be a non-empty string");
    text = e->get<std::string>();
    if (!text.empty() && text[0] == '-') text.erase(0, 1);
    if (text.find_first_of("\r\n") != std::string::npos)
      throw ToxicError("attribute 'error' must be one line");
  } else {
    throw ToxicError("resp_error needs attribute 'preset' or 'error'");
  }
  auto ad = attrs.find("address");
  if (ad != attrs.end() && !ad->is_null()) {
    if (!ad->is_string()) throw ToxicError("attribute 'address' must be a string (host:port)");
    address = ad->get<std::string>();
  }
  return std::make_shared<RespError>(RespFilter(attrs, defaults), preset, text, address);
}

} // namespace faultline::toxics
