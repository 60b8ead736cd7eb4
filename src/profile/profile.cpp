#include "profile/profile.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>
#include <toml++/toml.h>

#include "profile/expect.h"
#include "topology/actions.h"
#include "uv/address.h"

namespace faultline::profile {

std::string_view to_string(Action a) {
  switch (a) {
  case Action::AddToxic: return "toxic";
  case Action::Disable: return "disable";
  case Action::Enable: return "enable";
  case Action::DropConnections: return "drop_connections";
  case Action::AcceptReset: return "accept_reset";
  case Action::AcceptHang: return "accept_hang";
  case Action::ClusterFailover: return "cluster_failover";
  case Action::MigrateSlots: return "migrate_slots";
  case Action::SentinelFailover: return "sentinel_failover";
  }
  return "?";
}

std::string_view to_string(Mode m) {
  switch (m) {
  case Mode::Single: return "single";
  case Mode::Cluster: return "cluster";
  case Mode::Sentinel: return "sentinel";
  }
  return "?";
}

namespace {

constexpr std::string_view kActions[] = {"disable",          "enable",        "drop_connections",
                                         "accept_reset",     "accept_hang",   "cluster_failover",
                                         "migrate_slots",    "sentinel_failover"};

// The keys only a deployment action takes, and which.
constexpr std::string_view kDeploymentKeys[] = {"master", "mode", "slots", "to", "batch", "pace"};
bool deployment_key_applies(Action a, std::string_view key) {
  if (a == Action::ClusterFailover) return key == "master" || key == "mode";
  if (a == Action::MigrateSlots)
    return key == "slots" || key == "to" || key == "batch" || key == "pace";
  return false;
}

bool parse_action(std::string_view s, Action& out) {
  for (Action a : {Action::Disable, Action::Enable, Action::DropConnections, Action::AcceptReset,
                   Action::AcceptHang, Action::ClusterFailover, Action::MigrateSlots,
                   Action::SentinelFailover})
    if (to_string(a) == s) {
      out = a;
      return true;
    }
  return false;
}

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
  case toml::node_type::table: return "a table";
  case toml::node_type::array: return "an array";
  case toml::node_type::string: return "a string";
  case toml::node_type::integer: return "an integer";
  case toml::node_type::floating_point: return "a float";
  case toml::node_type::boolean: return "a boolean";
  case toml::node_type::date: return "a date";
  case toml::node_type::time: return "a time";
  case toml::node_type::date_time: return "a date-time";
  default: return "nothing";
  }
}

std::string join(const auto& items) {
  std::string out;
  for (const auto& i : items) {
    if (!out.empty()) out += ", ";
    out += i;
  }
  return out;
}

nlohmann::json to_json_value(const toml::node& n) {
  switch (n.type()) {
  case toml::node_type::table: {
    nlohmann::json o = nlohmann::json::object();
    for (auto&& [k, v] : *n.as_table()) o[std::string(k.str())] = to_json_value(v);
    return o;
  }
  case toml::node_type::array: {
    nlohmann::json a = nlohmann::json::array();
    for (const auto& v : *n.as_array()) a.push_back(to_json_value(v));
    return a;
  }
  case toml::node_type::string: return n.as_string()->get();
  case toml::node_type::integer: return n.as_integer()->get();
  case toml::node_type::floating_point: return n.as_floating_point()->get();
  case toml::node_type::boolean: return n.as_boolean()->get();
  default: {
    std::ostringstream s;
    n.visit([&s](auto&& v) { s << v; });
    return s.str();
  }
  }
}

// A step as written, before it is placed on the timeline.
struct Written {
  Step step;
  std::string where; // "step 2", "phase 'flap' step 1"
  toml::source_region region;
};

struct Instance {
  size_t written; // index into the written steps
  uint64_t at_ms;
  int repetition;
  std::string where;
};

class Loader {
public:
  explicit Loader(std::string source, LoadOptions opts = {})
      : source_(std::move(source)), opts_(opts) {}

  Profile load(const toml::table& doc) {
    check_keys(doc, {"name", "description", "seed", "loop", "duration", "proxies", "steps",
                     "phases", "expect"},
               "the profile");
    Profile p;
    p.source = source_;
    p.name = default_name();
    if (auto s = get_string(doc, "name", "the profile")) {
      p.name = *s;
      bool ok = !p.name.empty() && std::all_of(p.name.begin(), p.name.end(), [](char c) {
        return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
      });
      if (!ok)
        fail(*doc.get("name"), fmt::format("the profile: 'name' must be letters, digits, '-', "
                                           "'_' or '.', not \"{}\"",
                                           p.name));
    }
    if (auto s = get_string(doc, "description", "the profile")) p.description = *s;
    if (const toml::node* n = doc.get("seed")) {
      if (!n->is_integer() || n->as_integer()->get() < 0)
        fail(*n, fmt::format("the profile: 'seed' must be a non-negative integer, not {}",
                             type_name(*n)));
      p.seed = static_cast<uint64_t>(n->as_integer()->get());
    }
    if (const toml::node* n = doc.get("loop")) {
      if (!n->is_boolean())
        fail(*n, fmt::format("the profile: 'loop' must be a boolean, not {}", type_name(*n)));
      p.loop = n->as_boolean()->get();
    }
    std::optional<uint64_t> duration = get_duration(doc, "duration", "the profile");
    if (duration && *duration == 0)
      fail(*doc.get("duration"), "the profile: 'duration' must be above 0");

    load_proxies(doc, p);
    load_expect(doc, p);

    std::vector<Written> written;
    std::vector<Instance> instances;
    if (const toml::node* n = doc.get("steps")) {
      const toml::array* arr = array_of_tables(*n, "the profile", "steps");
      for (size_t i = 0; i < arr->size(); ++i) {
        std::string where = fmt::format("step {}", i + 1);
        written.push_back(load_step(*(*arr)[i].as_table(), where, p));
        instances.push_back({written.size() - 1, written.back().step.at_ms, 0, where});
      }
    }
    if (const toml::node* n = doc.get("phases")) {
      const toml::array* arr = array_of_tables(*n, "the profile", "phases");
      for (size_t i = 0; i < arr->size(); ++i)
        load_phase(*(*arr)[i].as_table(), i, p, written, instances);
    }

    // The length of one pass.
    uint64_t last = 0;
    for (const auto& in : instances) {
      const Step& s = written[in.written].step;
      last = std::max(last, s.for_ms ? in.at_ms + *s.for_ms : in.at_ms);
    }
    if (duration) {
      for (const auto& in : instances) {
        const Written& w = written[in.written];
        const Step& s = w.step;
        if (in.at_ms >= *duration)
          fail(w.region, fmt::format("{}: starts at {}, after the end of the profile (duration = "
                                     "\"{}\")",
                                     in.where, format_duration(in.at_ms),
                                     format_duration(*duration)));
        if (s.for_ms && in.at_ms + *s.for_ms > *duration)
          fail(w.region, fmt::format("{}: ends at {}, after the end of the profile (duration = "
                                     "\"{}\")",
                                     in.where, format_duration(in.at_ms + *s.for_ms),
                                     format_duration(*duration)));
      }
      p.length_ms = *duration;
    } else {
      p.length_ms = last;
    }
    if (p.length_ms == 0)
      fail_plain("the profile ends at 0s: give it a 'duration' or its steps a 'for'");

    for (const auto& in : instances) {
      Step s = written[in.written].step;
      s.at_ms = in.at_ms;
      s.repetition = in.repetition;
      p.steps.push_back(std::move(s));
    }
    check_overlaps(p, written, instances);
    std::stable_sort(p.steps.begin(), p.steps.end(),
                     [](const Step& a, const Step& b) { return a.at_ms < b.at_ms; });
    return p;
  }

  [[noreturn]] void fail(const toml::source_region& r, const std::string& msg) const {
    if (r.begin.line > 0)
      throw LoadError(fmt::format("{}:{}:{}: {}", source_, r.begin.line, r.begin.column, msg));
    throw LoadError(fmt::format("{}: {}", source_, msg));
  }
  [[noreturn]] void fail(const toml::node& n, const std::string& msg) const {
    fail(n.source(), msg);
  }
  [[noreturn]] void fail_plain(const std::string& msg) const { fail(toml::source_region{}, msg); }

private:
  std::string default_name() const {
    std::string s = source_;
    if (auto slash = s.find_last_of('/'); slash != std::string::npos) s.erase(0, slash + 1);
    if (s.size() > 5 && s.ends_with(".toml")) s.resize(s.size() - 5);
    bool ok = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
    });
    return ok ? s : "profile";
  }

  void check_keys(const toml::table& t, std::initializer_list<std::string_view> allowed,
                  std::string_view where) const {
    for (auto&& [k, v] : t) {
      if (std::find(allowed.begin(), allowed.end(), k.str()) != allowed.end()) continue;
      std::vector<std::string_view> names(allowed.begin(), allowed.end());
      toml::source_region r = k.source().begin.line ? k.source() : v.source();
      fail(r, fmt::format("{}: unknown key '{}' (expected one of: {})", where, k.str(),
                          join(names)));
    }
  }

  std::optional<std::string> get_string(const toml::table& t, std::string_view key,
                                        std::string_view where) const {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_string())
      fail(*n, fmt::format("{}: '{}' must be a string, not {}", where, key, type_name(*n)));
    return n->as_string()->get();
  }

  std::optional<uint64_t> get_duration(const toml::table& t, std::string_view key,
                                       std::string_view where) const {
    const toml::node* n = t.get(key);
    if (!n) return std::nullopt;
    if (!n->is_string())
      fail(*n, fmt::format("{}: '{}' must be a duration such as \"5s\", \"500ms\" or \"1m\", "
                           "not {}",
                           where, key, type_name(*n)));
    uint64_t ms = 0;
    std::string err;
    if (!parse_duration(n->as_string()->get(), ms, err))
      fail(*n, fmt::format("{}: '{}': {}", where, key, err));
    return ms;
  }

  const toml::array* array_of_tables(const toml::node& n, std::string_view where,
                                     std::string_view key) const {
    const toml::array* arr = n.as_array();
    if (!arr)
      fail(n, fmt::format("{}: '{}' must be an array of tables ([[{}]]), not {}", where, key, key,
                          type_name(n)));
    for (const auto& e : *arr)
      if (!e.is_table())
        fail(e, fmt::format("{}: each of '{}' must be a table, not {}", where, key,
                            type_name(e)));
    return arr;
  }

  // [expect]: each key checked on its own, so an error points at its line.
  void load_expect(const toml::table& doc, Profile& p) const {
    const toml::node* n = doc.get("expect");
    if (!n) return;
    const toml::table* t = n->as_table();
    if (!t)
      fail(*n, fmt::format("the profile: 'expect' must be a table ([expect]), not {}",
                           type_name(*n)));
    for (auto&& [k, v] : *t) {
      nlohmann::json one = nlohmann::json::object();
      one[std::string(k.str())] = to_json_value(v);
      try {
        parse_expectations(one);
      } catch (const std::invalid_argument& e) {
        toml::source_region r = k.source().begin.line ? k.source() : v.source();
        fail(r, fmt::format("[expect]: {}", e.what()));
      }
      p.expect[std::string(k.str())] = one[std::string(k.str())];
    }
  }

  void load_proxies(const toml::table& doc, Profile& p) const {
    const toml::node* n = doc.get("proxies");
    if (!n) {
      if (opts_.mode == Mode::Cluster || opts_.mode == Mode::Sentinel) p.all_proxies = true;
      else p.proxies.push_back({"redis", "", ""});
      return;
    }
    const toml::array* arr = array_of_tables(*n, "the profile", "proxies");
    if (arr->empty()) fail(*n, "the profile: 'proxies' is empty (leave it out for \"redis\")");
    for (size_t i = 0; i < arr->size(); ++i) {
      const toml::table& t = *(*arr)[i].as_table();
      std::string where = fmt::format("proxy {}", i + 1);
      check_keys(t, {"name", "listen", "upstream"}, where);
      ProxyDecl d;
      auto name = get_string(t, "name", where);
      if (!name || name->empty()) fail(t, fmt::format("{}: 'name' is missing", where));
      d.name = *name;
      for (const auto& q : p.proxies)
        if (q.name == d.name)
          fail(*t.get("name"), fmt::format("{}: proxy '{}' is declared twice", where, d.name));
      for (auto [key, out] : {std::pair{"listen", &d.listen}, std::pair{"upstream", &d.upstream}}) {
        auto v = get_string(t, key, where);
        if (!v) continue;
        std::string err;
        if (!uv::parse_endpoint(*v, err))
          fail(*t.get(key), fmt::format("{}: '{}': {}", where, key, err));
        *out = *v;
      }
      p.proxies.push_back(std::move(d));
    }
  }

  Written load_step(const toml::table& t, const std::string& where, const Profile& p) const {
    check_keys(t, {"name", "at", "for", "proxy", "toxic", "action", "reset", "master", "mode",
                   "slots", "to", "batch", "pace"},
               where);
    Written w;
    w.where = where;
    w.region = t.source();
    w.step.line = static_cast<int>(t.source().begin.line);
    Step& s = w.step;
    auto at = get_duration(t, "at", where);
    if (!at) fail(t, fmt::format("{}: 'at' is missing (when the step happens, e.g. at = \"5s\")",
                                 where));
    s.at_ms = *at;
    s.for_ms = get_duration(t, "for", where);
    if (s.for_ms && *s.for_ms == 0) fail(*t.get("for"), fmt::format("{}: 'for' must be above 0",
                                                                    where));

    const toml::node* toxic = t.get("toxic");
    const toml::node* action = t.get("action");
    if (toxic && action)
      fail(*action, fmt::format("{}: has both 'toxic' and 'action' (a step does one thing)",
                                where));
    if (!toxic && !action)
      fail(t, fmt::format("{}: needs 'toxic' or 'action' (what the step does)", where));
    if (toxic) {
      s.action = Action::AddToxic;
      load_toxic(*toxic, where, s.toxic);
    } else {
      if (!action->is_string())
        fail(*action, fmt::format("{}: 'action' must be a string, not {}", where,
                                  type_name(*action)));
      const std::string& a = action->as_string()->get();
      if (!parse_action(a, s.action))
        fail(*action, fmt::format("{}: unknown action '{}' (one of: {})", where, a,
                                  join(kActions)));
      if (s.on_deployment() && s.for_ms)
        fail(*t.get("for"), fmt::format("{}: 'for' cannot be used with action '{}' (it starts "
                                        "at 'at' and runs to its end; it is not undone)",
                                        where, a));
      if (s.instantaneous() && s.for_ms)
        fail(*t.get("for"), fmt::format("{}: 'for' cannot be used with action '{}' (it happens "
                                        "at once)",
                                        where, a));
    }
    for (std::string_view key : kDeploymentKeys)
      if (const toml::node* k = t.get(key); k && !deployment_key_applies(s.action, key))
        fail(*k, fmt::format("{}: '{}' does not apply to {} (it is a field of {})", where, key,
                             toxic ? std::string("a toxic step")
                                   : fmt::format("action '{}'", to_string(s.action)),
                             key == "master" || key == "mode" ? "action 'cluster_failover'"
                                                              : "action 'migrate_slots'"));
    if (s.on_deployment()) {
      load_deployment(t, *action, where, s);
      if (const toml::node* px = t.get("proxy"))
        fail(*px, fmt::format("{}: 'proxy' does not apply to action '{}' (it acts on the "
                              "deployment, not on a proxy)",
                              where, to_string(s.action)));
    } else if (auto px = get_string(t, "proxy", where)) {
      if (!p.all_proxies) {
        auto it = std::find_if(p.proxies.begin(), p.proxies.end(),
                               [&](const ProxyDecl& d) { return d.name == *px; });
        if (it == p.proxies.end()) {
          std::vector<std::string> names;
          for (const auto& d : p.proxies) names.push_back(d.name);
          fail(*t.get("proxy"), fmt::format("{}: unknown proxy '{}' (the profile declares: {})",
                                            where, *px, join(names)));
        }
      }
      s.proxy = *px;
    } else if (p.all_proxies) {
      fail(t, fmt::format("{}: 'proxy' is missing (in {} mode a profile without [[proxies]] "
                          "acts on every node's proxy: name one, e.g. \"node-127.0.0.1-7000\")",
                          where, to_string(*opts_.mode)));
    } else if (p.proxies.size() == 1) {
      s.proxy = p.proxies[0].name;
    } else {
      fail(t, fmt::format("{}: 'proxy' is missing (the profile declares {} proxies)", where,
                          p.proxies.size()));
    }
    if (const toml::node* r = t.get("reset")) {
      if (s.action != Action::DropConnections)
        fail(*r, fmt::format("{}: 'reset' only applies to action 'drop_connections'", where));
      if (!r->is_boolean())
        fail(*r, fmt::format("{}: 'reset' must be a boolean, not {}", where, type_name(*r)));
      s.reset = r->as_boolean()->get();
    }
    auto name = get_string(t, "name", where);
    s.label = name ? *name : s.describe();
    return w;
  }

  // cluster_failover, migrate_slots, sentinel_failover: their fields and the run's mode.
  void load_deployment(const toml::table& t, const toml::node& action, const std::string& where,
                       Step& s) const {
    const std::string_view name = to_string(s.action);
    const Mode needs = s.action == Action::SentinelFailover ? Mode::Sentinel : Mode::Cluster;
    if (opts_.mode && *opts_.mode != needs)
      fail(action, fmt::format("{}: action '{}' needs {} mode (faultline {}), and this run {}",
                               where, name, to_string(needs),
                               needs == Mode::Cluster ? "--cluster HOST:PORT"
                                                      : "--sentinel HOST:PORT --master NAME",
                               *opts_.mode == Mode::Single
                                   ? "fronts a single Redis"
                                   : fmt::format("is in {} mode", to_string(*opts_.mode))));
    DeploymentSpec& d = s.deployment;
    auto master_spec = [&](std::string_view key, std::string& out) {
      auto v = get_string(t, key, where);
      if (!v)
        fail(t, fmt::format("{}: '{}' is missing (which master: \"slot N\", \"IP:PORT\", a node "
                            "id or \"node-IP-PORT\")",
                            where, key));
      if (std::string e = topology::check_master_spec(*v); !e.empty())
        fail(*t.get(key), fmt::format("{}: '{}': {}", where, key, e));
      out = *v;
    };
    if (s.action == Action::ClusterFailover) {
      master_spec("master", d.master);
      if (auto m = get_string(t, "mode", where)) {
        if (*m != "force" && *m != "takeover")
          fail(*t.get("mode"), fmt::format("{}: 'mode' must be \"force\" or \"takeover\" (or "
                                           "left out), not \"{}\"",
                                           where, *m));
        d.mode = *m;
      }
    } else if (s.action == Action::MigrateSlots) {
      const toml::node* sl = t.get("slots");
      if (!sl) fail(t, fmt::format("{}: 'slots' is missing (e.g. slots = \"0-99\" or slots = 7)",
                                   where));
      auto bad_slots = [&] {
        fail(*sl, fmt::format("{}: 'slots' must be a slot (0 to 16383) or a range \"FIRST-LAST\"",
                              where));
      };
      auto slot_of = [&](std::string_view x) {
        int v = -1;
        auto [ptr, ec] = std::from_chars(x.data(), x.data() + x.size(), v);
        if (ec != std::errc() || ptr != x.data() + x.size() || v < 0 || v > 16383) bad_slots();
        return v;
      };
      if (sl->is_integer()) {
        int64_t v = sl->as_integer()->get();
        if (v < 0 || v > 16383) bad_slots();
        d.first_slot = d.last_slot = static_cast<int>(v);
      } else if (sl->is_string()) {
        std::string_view x = sl->as_string()->get();
        auto dash = x.find('-');
        d.first_slot = slot_of(x.substr(0, dash));
        d.last_slot = dash == std::string_view::npos ? d.first_slot : slot_of(x.substr(dash + 1));
        if (d.last_slot < d.first_slot)
          fail(*sl, fmt::format("{}: 'slots': \"{}\" ends before it starts", where, x));
      } else {
        bad_slots();
      }
      master_spec("to", d.to);
      if (const toml::node* b = t.get("batch")) {
        if (!b->is_integer() || b->as_integer()->get() < 1 || b->as_integer()->get() > 10000)
          fail(*b, fmt::format("{}: 'batch' must be an integer from 1 to 10000 (keys per "
                               "MIGRATE)",
                               where));
        d.batch = static_cast<uint32_t>(b->as_integer()->get());
      }
      d.pace_ms = get_duration(t, "pace", where).value_or(0);
    }
  }

  void load_toxic(const toml::node& n, const std::string& where, ToxicSpec& out) const {
    const toml::table* t = n.as_table();
    if (!t)
      fail(n, fmt::format("{}: 'toxic' must be a table such as {{ type = \"latency\", attributes "
                          "= {{ latency = 100 }} }}, not {}",
                          where, type_name(n)));
    check_keys(*t, {"name", "type", "stream", "toxicity", "attributes"}, where + ": toxic");
    auto type = get_string(*t, "type", where + ": toxic");
    if (!type) fail(n, fmt::format("{}: toxic: 'type' is missing", where));
    if (!toxics::known_type(*type))
      fail(*t->get("type"), fmt::format("{}: toxic: unknown type '{}' (one of: {})", where, *type,
                                        join(toxics::type_names())));
    out.type = *type;
    if (auto st = get_string(*t, "stream", where + ": toxic")) {
      if (!toxics::parse_stream(*st, out.stream))
        fail(*t->get("stream"), fmt::format("{}: toxic: 'stream' must be \"upstream\" or "
                                            "\"downstream\", not \"{}\"",
                                            where, *st));
    }
    if (const toml::node* tx = t->get("toxicity")) {
      auto v = tx->value<double>();
      if (!v || !(tx->is_integer() || tx->is_floating_point()))
        fail(*tx, fmt::format("{}: toxic: 'toxicity' must be a number, not {}", where,
                              type_name(*tx)));
      if (!(*v >= 0.0 && *v <= 1.0))
        fail(*tx, fmt::format("{}: toxic: 'toxicity' must be between 0 and 1", where));
      out.toxicity = *v;
    }
    bool named = false;
    if (auto nm = get_string(*t, "name", where + ": toxic")) {
      named = true;
      if (nm->empty()) fail(*t->get("name"), fmt::format("{}: toxic: 'name' is empty", where));
      out.name = *nm;
    }
    const toml::node* attrs = t->get("attributes");
    if (attrs && !attrs->is_table())
      fail(*attrs, fmt::format("{}: toxic: 'attributes' must be a table, not {}", where,
                               type_name(*attrs)));
    out.attributes = attrs ? to_json_value(*attrs) : nlohmann::json::object();
    try {
      auto impl = toxics::make_impl(out.type, out.attributes);
      if (!named) out.name = toxics::default_name(out.type, out.stream, impl.get());
    } catch (const toxics::ToxicError& e) {
      // At the attribute's own line when the error names one.
      const toml::node* at = attrs ? attrs : &n;
      if (attrs && !e.attribute.empty())
        if (const toml::node* key = attrs->as_table()->get(e.attribute)) at = key;
      fail(*at, fmt::format("{}: toxic {}: {}", where, out.type, e.what()));
    } catch (const std::exception& e) {
      fail(attrs ? *attrs : n, fmt::format("{}: toxic {}: {}", where, out.type, e.what()));
    }
  }

  void load_phase(const toml::table& t, size_t index, const Profile& p,
                  std::vector<Written>& written, std::vector<Instance>& instances) const {
    std::string where = fmt::format("phase {}", index + 1);
    check_keys(t, {"name", "at", "repeat", "every", "steps"}, where);
    std::string name = fmt::format("phase{}", index + 1);
    if (auto nm = get_string(t, "name", where)) {
      name = *nm;
      where = fmt::format("phase '{}'", name);
    }
    uint64_t at = get_duration(t, "at", where).value_or(0);
    int64_t repeat = 1;
    if (const toml::node* r = t.get("repeat")) {
      if (!r->is_integer())
        fail(*r, fmt::format("{}: 'repeat' must be an integer, not {}", where, type_name(*r)));
      repeat = r->as_integer()->get();
      if (repeat < 1 || repeat > 100000)
        fail(*r, fmt::format("{}: 'repeat' must be between 1 and 100000", where));
    }
    auto every = get_duration(t, "every", where);
    if (every && *every == 0) fail(*t.get("every"), fmt::format("{}: 'every' must be above 0",
                                                                where));
    if (repeat > 1 && !every)
      fail(t, fmt::format("{}: 'every' is missing (how often the phase repeats)", where));
    const toml::node* sn = t.get("steps");
    if (!sn) fail(t, fmt::format("{}: 'steps' is missing", where));
    const toml::array* arr = array_of_tables(*sn, where, "steps");
    if (arr->empty()) fail(*sn, fmt::format("{}: 'steps' is empty", where));
    size_t first = written.size();
    for (size_t i = 0; i < arr->size(); ++i) {
      std::string sw = fmt::format("{} step {}", where, i + 1);
      Written w = load_step(*(*arr)[i].as_table(), sw, p);
      w.step.phase = name;
      const Step& s = w.step;
      if (every) {
        if (!s.instantaneous() && !s.for_ms && repeat > 1)
          fail(w.region, fmt::format("{}: 'for' is missing (in a repeating phase a step must end "
                                     "before the next repetition)",
                                     sw));
        uint64_t end = s.for_ms ? s.at_ms + *s.for_ms : s.at_ms;
        if (s.at_ms >= *every || end > *every)
          fail(w.region, fmt::format("{}: {} at {}, after the phase repeats (every = \"{}\")",
                                     sw, s.at_ms >= *every ? "starts" : "ends",
                                     format_duration(s.at_ms >= *every ? s.at_ms : end),
                                     format_duration(*every)));
      }
      written.push_back(std::move(w));
    }
    for (int64_t r = 0; r < repeat; ++r)
      for (size_t i = first; i < written.size(); ++i)
        instances.push_back({i,
                             at + static_cast<uint64_t>(r) * every.value_or(0) +
                                 written[i].step.at_ms,
                             static_cast<int>(r + 1),
                             repeat > 1 ? fmt::format("{} (repetition {})", written[i].where,
                                                      r + 1)
                                        : written[i].where});
  }

  // Two steps may not hold the same thing at the same time: the same toxic name on one proxy,
  // a proxy's disabled state, or its accept mode.
  void check_overlaps(const Profile& p, const std::vector<Written>& written,
                      const std::vector<Instance>& instances) const {
    struct Span {
      const Instance* in;
      uint64_t begin, end;
      std::string resource;
    };
    std::vector<Span> spans;
    for (const auto& in : instances) {
      const Step& s = written[in.written].step;
      if (s.instantaneous()) continue;
      uint64_t end = s.for_ms ? in.at_ms + *s.for_ms : p.length_ms;
      if (s.action == Action::Disable && !s.for_ms) {
        // Until the next enable of the same proxy.
        for (const auto& other : instances) {
          const Step& o = written[other.written].step;
          if (o.action == Action::Enable && o.proxy == s.proxy && other.at_ms > in.at_ms)
            end = std::min(end, other.at_ms);
        }
      }
      std::string res;
      if (s.action == Action::AddToxic) res = "toxic '" + s.toxic.name + "'";
      else if (s.action == Action::Disable) res = "disabled";
      else res = "accept";
      spans.push_back({&in, in.at_ms, end, s.proxy + "\n" + res});
    }
    // Report the step written later (or, on one line, the one that comes later in time).
    auto later = [&](const Span& a, const Span& b) {
      if (a.in->written != b.in->written) return a.in->written > b.in->written;
      return a.begin > b.begin;
    };
    for (size_t i = 0; i < spans.size(); ++i)
      for (size_t j = i + 1; j < spans.size(); ++j) {
        const Span& a = spans[i];
        const Span& b = spans[j];
        if (a.resource != b.resource || !(a.begin < b.end && b.begin < a.end)) continue;
        const Span& bad = later(a, b) ? a : b;
        const Span& other = later(a, b) ? b : a;
        const Written& bw = written[bad.in->written];
        const Written& ow = written[other.in->written];
        const Step& s = bw.step;
        std::string first =
            ow.region.begin.line ? fmt::format("the step at line {}", ow.region.begin.line)
                                 : other.in->where;
        std::string what;
        if (s.action == Action::AddToxic)
          what = fmt::format("adds toxic '{}' to proxy '{}' at {} while {} has it ({} to {}); "
                             "give one of them another toxic name",
                             s.toxic.name, s.proxy, format_duration(bad.begin), first,
                             format_duration(other.begin), format_duration(other.end));
        else if (s.action == Action::Disable)
          what = fmt::format("disables proxy '{}' at {} while {} has it disabled ({} to {})",
                             s.proxy, format_duration(bad.begin), first,
                             format_duration(other.begin), format_duration(other.end));
        else
          what = fmt::format("changes how proxy '{}' accepts at {} while {} does ({} to {})",
                             s.proxy, format_duration(bad.begin), first,
                             format_duration(other.begin), format_duration(other.end));
        fail(bw.region, fmt::format("{}: {}", bad.in->where, what));
      }
    // An enable inside a timed disable would be undone by the disable's end.
    for (const auto& in : instances) {
      const Step& s = written[in.written].step;
      if (s.action != Action::Enable) continue;
      for (const auto& sp : spans) {
        const Step& d = written[sp.in->written].step;
        if (d.action != Action::Disable || !d.for_ms || d.proxy != s.proxy) continue;
        if (in.at_ms > sp.begin && in.at_ms < sp.end) {
          const Written& dw = written[sp.in->written];
          std::string first = dw.region.begin.line
                                  ? fmt::format("the step at line {}", dw.region.begin.line)
                                  : sp.in->where;
          fail(written[in.written].region,
               fmt::format("{}: enables proxy '{}' at {} while {} has it disabled ({} to {})",
                           in.where, s.proxy, format_duration(in.at_ms), first,
                           format_duration(sp.begin), format_duration(sp.end)));
        }
      }
    }
  }

  std::string source_;
  LoadOptions opts_;
};

toml::table json_to_toml(const nlohmann::json& j, const Loader& l, const std::string& path);

std::unique_ptr<toml::node> json_node(const nlohmann::json& j, const Loader& l,
                                      const std::string& path) {
  switch (j.type()) {
  case nlohmann::json::value_t::object:
    return std::make_unique<toml::table>(json_to_toml(j, l, path));
  case nlohmann::json::value_t::array: {
    auto arr = std::make_unique<toml::array>();
    for (size_t i = 0; i < j.size(); ++i) {
      auto n = json_node(j[i], l, fmt::format("{}[{}]", path, i));
      if (auto* t = n->as_table()) arr->push_back(std::move(*t));
      else if (auto* a = n->as_array()) arr->push_back(std::move(*a));
      else if (auto* s = n->as_string()) arr->push_back(s->get());
      else if (auto* in = n->as_integer()) arr->push_back(in->get());
      else if (auto* f = n->as_floating_point()) arr->push_back(f->get());
      else if (auto* b = n->as_boolean()) arr->push_back(b->get());
    }
    return arr;
  }
  case nlohmann::json::value_t::string:
    return std::make_unique<toml::value<std::string>>(j.get<std::string>());
  case nlohmann::json::value_t::boolean: return std::make_unique<toml::value<bool>>(j.get<bool>());
  case nlohmann::json::value_t::number_integer:
    return std::make_unique<toml::value<int64_t>>(j.get<int64_t>());
  case nlohmann::json::value_t::number_unsigned:
    if (j.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
      l.fail_plain(fmt::format("{}: number out of range", path));
    return std::make_unique<toml::value<int64_t>>(j.get<int64_t>());
  case nlohmann::json::value_t::number_float:
    return std::make_unique<toml::value<double>>(j.get<double>());
  default: l.fail_plain(fmt::format("{}: null is not allowed (leave the key out)", path));
  }
}

toml::table json_to_toml(const nlohmann::json& j, const Loader& l, const std::string& path) {
  toml::table t;
  for (auto it = j.begin(); it != j.end(); ++it) {
    std::string sub = path.empty() ? it.key() : path + "." + it.key();
    auto n = json_node(it.value(), l, sub);
    if (auto* tb = n->as_table()) t.insert(it.key(), std::move(*tb));
    else if (auto* a = n->as_array()) t.insert(it.key(), std::move(*a));
    else if (auto* s = n->as_string()) t.insert(it.key(), s->get());
    else if (auto* in = n->as_integer()) t.insert(it.key(), in->get());
    else if (auto* f = n->as_floating_point()) t.insert(it.key(), f->get());
    else if (auto* b = n->as_boolean()) t.insert(it.key(), b->get());
  }
  return t;
}

} // namespace

std::string Step::describe() const {
  switch (action) {
  case Action::AddToxic: {
    std::string what = toxic.type;
    const auto& a = toxic.attributes;
    for (const char* key : {"preset", "reply", "error"})
      if (a.contains(key) && a[key].is_string()) {
        what += " " + a[key].get<std::string>();
        break;
      }
    if (toxic.type == "latency" && a.contains("latency"))
      what += fmt::format(" {}ms", a["latency"].dump());
    return fmt::format("{} on {} ({})", what, proxy, toxics::to_string(toxic.stream));
  }
  case Action::Disable: return fmt::format("disable {}", proxy);
  case Action::Enable: return fmt::format("enable {}", proxy);
  case Action::DropConnections: return fmt::format("drop connections of {}", proxy);
  case Action::AcceptReset: return fmt::format("reset new connections to {}", proxy);
  case Action::AcceptHang: return fmt::format("hang new connections to {}", proxy);
  case Action::ClusterFailover:
    return fmt::format("cluster failover of {}{}", deployment.master,
                       deployment.mode.empty() ? "" : " (" + deployment.mode + ")");
  case Action::MigrateSlots:
    return fmt::format("migrate slots {}{} to {}", deployment.first_slot,
                       deployment.last_slot != deployment.first_slot
                           ? fmt::format("-{}", deployment.last_slot)
                           : "",
                       deployment.to);
  case Action::SentinelFailover: return "sentinel failover";
  }
  return "?";
}

bool parse_duration(std::string_view text, uint64_t& ms, std::string& err) {
  auto bad = [&] {
    err = fmt::format("bad duration \"{}\" (a number and a unit: ms, s or m, e.g. \"5s\", "
                      "\"500ms\", \"1m30s\")",
                      text);
    return false;
  };
  if (text.empty()) return bad();
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
      ++i;
    if (i == start) return bad();
    double v = 0;
    auto [p, ec] = std::from_chars(text.data() + start, text.data() + i, v);
    if (ec != std::errc() || p != text.data() + i) return bad();
    size_t us = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    std::string_view unit = text.substr(us, i - us);
    if (unit == "ms") total += v;
    else if (unit == "s") total += v * 1000;
    else if (unit == "m") total += v * 60000;
    else return bad();
  }
  if (total > 1e12 || total != std::floor(total)) {
    if (total > 1e12) return bad();
    err = fmt::format("duration \"{}\" is not a whole number of milliseconds", text);
    return false;
  }
  ms = static_cast<uint64_t>(total);
  return true;
}

std::string format_duration(uint64_t ms) {
  if (ms == 0) return "0s";
  if (ms < 1000) return fmt::format("{}ms", ms);
  if (ms % 60000 == 0) return fmt::format("{}m", ms / 60000);
  if (ms > 60000) return fmt::format("{}m{}", ms / 60000, format_duration(ms % 60000));
  if (ms % 1000 == 0) return fmt::format("{}s", ms / 1000);
  std::string s = fmt::format("{:.3f}", static_cast<double>(ms) / 1000.0);
  while (s.back() == '0') s.pop_back();
  return s + "s";
}

nlohmann::json to_json(const Step& s) {
  nlohmann::json j = {{"label", s.label},
                      {"proxy", s.proxy},
                      {"action", std::string(to_string(s.action))},
                      {"at", format_duration(s.at_ms)}};
  if (s.for_ms) j["for"] = format_duration(*s.for_ms);
  if (s.action == Action::AddToxic)
    j["toxic"] = {{"name", s.toxic.name},
                  {"type", s.toxic.type},
                  {"stream", std::string(toxics::to_string(s.toxic.stream))},
                  {"toxicity", s.toxic.toxicity},
                  {"attributes", s.toxic.attributes}};
  if (s.action == Action::ClusterFailover) {
    j["master"] = s.deployment.master;
    if (!s.deployment.mode.empty()) j["mode"] = s.deployment.mode;
  }
  if (s.action == Action::MigrateSlots) {
    j["slots"] = fmt::format("{}-{}", s.deployment.first_slot, s.deployment.last_slot);
    j["to"] = s.deployment.to;
    j["batch"] = s.deployment.batch;
    j["pace"] = format_duration(s.deployment.pace_ms);
  }
  if (!s.phase.empty()) {
    j["phase"] = s.phase;
    j["repetition"] = s.repetition;
  }
  if (s.line) j["line"] = s.line;
  return j;
}

Profile load_toml(std::string_view text, const std::string& source_name,
                  const LoadOptions& opts) {
  Loader l(source_name, opts);
  toml::table doc;
  try {
    doc = toml::parse(text, source_name);
  } catch (const toml::parse_error& e) {
    l.fail(e.source(), std::string(e.description()));
  }
  return l.load(doc);
}

Profile load_file(const std::string& path, const LoadOptions& opts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw LoadError(fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::ostringstream ss;
  ss << in.rdbuf();
  return load_toml(ss.str(), path, opts);
}

Profile load_json(const nlohmann::json& doc, const std::string& source_name,
                  const LoadOptions& opts) {
  Loader l(source_name, opts);
  if (!doc.is_object()) l.fail_plain("a profile must be a JSON object");
  toml::table t = json_to_toml(doc, l, "");
  return l.load(t);
}

} // namespace faultline::profile
