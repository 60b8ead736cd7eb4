// resp_error: answer a matching command with a Redis error, without sending it to Redis.
// `preset` writes Redis's own wording (and picks the commands Redis would refuse); `error` is
// any text. MOVED/ASK carry the key's real hash slot (CRC16, hash tags honoured).

#include <fmt/format.h>

#include "toxics/resp_rule.h"
#include "toxics/slot.h"

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

struct RespErrorParams {
  std::string preset;
  std::string error; // without a leading '-' once resolved; empty when a preset is given
  std::string address;
  FilterParams filter;
};

// Without a session to ask (unit tests): faultline's default listener.
constexpr const char* kOwnListener = "127.0.0.1:6381";

bool redirects(const RespErrorParams& p) { return p.preset == "moved" || p.preset == "ask"; }

class RespError final : public RespToxic<RespErrorParams> {
public:
  RespError(RespErrorParams p, const AttrTable<RespErrorParams>& attrs)
      : RespToxic(resolved(std::move(p)), attrs) {
    const Preset* pr = find_preset(p_.preset);
    text_ = pr ? pr->text : p_.error;
  }

protected:
  bool applies(const resp::RequestFrame& f, const RespContext& ctx) const override {
    if (ctx.monitoring) return false; // MONITOR streams lines; an error would be read as one
    // A cluster redirects only commands with keys; a keyless one is served where it is.
    if (redirects(p_) && !f.has_key) return false;
    return true;
  }
  RespAction act(const resp::RequestFrame& f, const RespContext& ctx) const override {
    RespAction a;
    a.kind = RespActionKind::Inject;
    std::string line = text_;
    if (redirects(p_)) {
      unsigned slot = key_hash_slot(f.key.data);
      std::string to = p_.address;
      if (to.empty()) to = ctx.redirect ? ctx.redirect->redirect_address(slot) : kOwnListener;
      line = fmt::format("{} {} {}", p_.preset == "moved" ? "MOVED" : "ASK", slot, to);
    }
    a.reply = "-" + line + "\r\n";
    return a;
  }

private:
  // A preset names the commands Redis itself would refuse, unless `commands` is given.
  static RespErrorParams resolved(RespErrorParams p) {
    if (const Preset* pr = find_preset(p.preset)) {
      if (!p.filter.commands) p.filter.commands = pr->default_commands;
    } else if (p.error.empty()) {
      throw ToxicError("resp_error needs attribute 'preset' or 'error'");
    } else if (p.error[0] == '-') {
      p.error.erase(0, 1);
    }
    return p;
  }

  std::string text_; // without the leading '-' and the CRLF
};

void read_preset(const nlohmann::json& v, RespErrorParams& p) {
  p.preset = attr::read_string(v, "preset", "");
  if (find_preset(p.preset)) return;
  std::string names;
  for (const auto& x : presets()) names += (names.empty() ? "" : ", ") + std::string(x.name);
  throw ToxicError(
      fmt::format("attribute 'preset': unknown preset '{}' (one of: {})", p.preset, names));
}

// Read only without a preset (a preset wins, whatever `error` holds).
void read_error(const nlohmann::json& v, RespErrorParams& p) {
  if (!p.preset.empty()) return;
  if (!v.is_string() || v.get_ref<const std::string&>().empty())
    throw ToxicError("attribute 'error' must be a non-empty string");
  p.error = v.get<std::string>();
  if (p.error.find_first_of("\r\n") != std::string::npos)
    throw ToxicError("attribute 'error' must be one line");
}

bool no_preset(const RespErrorParams& p) { return p.preset.empty(); }

} // namespace

const ToxicType<RespError> kRespError{"resp_error", 110, with_filter<RespErrorParams>({
    string_attr("preset", &RespErrorParams::preset, "", "",
                "Redis's own wording, from the presets below; `preset` or `error` is required")
        .read_with(read_preset)
        .omit_default(),
    string_attr("error", &RespErrorParams::error, "", "",
                "any one-line error text (`ERR boom`; a leading `-` is dropped); a `preset` wins")
        .read_with(read_error)
        .shown_if(no_preset),
    string_attr("address", &RespErrorParams::address, "host:port", "",
                "where the `moved` and `ask` presets send the client; empty: this proxy's own "
                "listener, or in cluster mode the listener of the node serving the key's slot")
        .shown_if(redirects),
})};

} // namespace faultline::toxics
