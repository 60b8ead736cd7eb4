#include "control/api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <optional>

#include <fmt/format.h>
#include <uv.h>

#include "base/log.h"
#include "observe/clients.h"
#include "observe/metrics.h"
#include "observe/prometheus.h"
#include "observe/traffic_log.h"
#include "control/profiles.h"
#include "profile/runner.h"
#include "proxy/proxy.h"
#include "toxics/toxic.h"
#include "uv/address.h"

namespace faultline::control {

using observe::append_metric_header;
using observe::escape_label_value;
using nlohmann::json;

namespace {

// Toxiproxy's error strings (api.go), so clients that match on them keep working.
constexpr const char* kBadRequestBody = "bad request body";
constexpr const char* kMissingField = "missing required field";
constexpr const char* kProxyNotFound = "proxy not found";
constexpr const char* kProxyAlreadyExists = "proxy already exists";
constexpr const char* kInvalidStream = "stream was invalid, can be either upstream or downstream";
constexpr const char* kInvalidToxicType = "invalid toxic type";
constexpr const char* kToxicAlreadyExists = "toxic already exists";
constexpr const char* kToxicNotFound = "toxic not found";

// Deeper JSON than this is refused before it is parsed: nothing in the API nests beyond 3.
constexpr int kMaxJsonDepth = 32;
// Where a proxy created without `listen` listens: loopback, a free port.
constexpr const char* kDefaultListen = "127.0.0.1:0";

[[noreturn]] void bad_body(const std::string& detail) {
  throw ApiError(400, fmt::format("{}: {}", kBadRequestBody, detail));
}

// Nesting depth outside strings, without building anything.
int json_depth(std::string_view s) {
  int depth = 0, max_depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (in_string) {
      if (c == '\\')
        ++i;
      else if (c == '"')
        in_string = false;
    } else if (c == '"') {
      in_string = true;
    } else if (c == '{' || c == '[') {
      max_depth = std::max(max_depth, ++depth);
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return max_depth;
}

json parse_json(const std::string& body) {
  if (body.find_first_not_of(" \t\r\n") == std::string::npos)
    bad_body("empty body");
  if (json_depth(body) > kMaxJsonDepth)
    bad_body(fmt::format("JSON nested deeper than {} levels", kMaxJsonDepth));
  try {
    return json::parse(body);
  } catch (const json::exception& e) {
    // "[json.exception.parse_error.101] parse error at line 1, ..." → the part after the tag.
    std::string what = e.what();
    auto pos = what.find("] ");
    bad_body(pos == std::string::npos ? what : what.substr(pos + 2));
  }
}

json parse_object(const std::string& body) {
  json j = parse_json(body);
  if (!j.is_object())
    bad_body("expected a JSON object");
  return j;
}

const char* json_type_name(const json& v) {
  switch (v.type()) {
  case json::value_t::string:
    return "a string";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
  case json::value_t::number_float:
    return "a number";
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default:
    return "null";
  }
}

// An optional field of a request object; null counts as absent (Go's decoder does the same).
const json* field(const json& obj, const char* key) {
  auto it = obj.find(key);
  return it == obj.end() || it->is_null() ? nullptr : &*it;
}

std::optional<std::string> opt_string(const json& obj, const char* key) {
  const json* v = field(obj, key);
  if (!v)
    return std::nullopt;
  if (!v->is_string())
    bad_body(fmt::format("field '{}' must be a string, not {}", key, json_type_name(*v)));
  return v->get<std::string>();
}

std::optional<bool> opt_bool(const json& obj, const char* key) {
  const json* v = field(obj, key);
  if (!v)
    return std::nullopt;
  if (!v->is_boolean())
    bad_body(fmt::format("field '{}' must be a boolean, not {}", key, json_type_name(*v)));
  return v->get<bool>();
}

std::optional<double> opt_toxicity(const json& obj) {
  const json* v = field(obj, "toxicity");
  if (!v)
    return std::nullopt;
  if (!v->is_number() || !(v->get<double>() >= 0.0 && v->get<double>() <= 1.0))
    bad_body("field 'toxicity' must be a number from 0.0 to 1.0");
  return v->get<double>();
}

std::string_view accept_name(proxy::AcceptMode m) {
  switch (m) {
  case proxy::AcceptMode::Reset:
    return "reset";
  case proxy::AcceptMode::Hang:
    return "hang";
  default:
    return "normal";
  }
}

std::optional<proxy::AcceptMode> opt_accept(const json& obj) {
  auto s = opt_string(obj, "accept");
  if (!s)
    return std::nullopt;
  if (*s == "normal")
    return proxy::AcceptMode::Normal;
  if (*s == "reset")
    return proxy::AcceptMode::Reset;
  if (*s == "hang")
    return proxy::AcceptMode::Hang;
  bad_body(fmt::format("field 'accept' must be \"normal\", \"reset\" or \"hang\", not \"{}\"", *s));
}

void check_address(const char* what, const std::string& addr, const std::string& where = {}) {
  std::string err;
  if (!uv::parse_endpoint(addr, err))
    throw ApiError(400, fmt::format("{}: {}{}", what, err, where));
}

// An error from Proxy::start/set_*: the socket refused (Toxiproxy answers 500 with Go's listen
// error, "listen tcp 127.0.0.1:3310: bind: address already in use"), or the address itself was
// wrong (400).
[[noreturn]] void proxy_failure(const std::string& err) {
  bool socket = err.rfind("listen tcp ", 0) == 0;
  throw ApiError(socket ? 500 : 400, err);
}

// One proxy of a POST /proxies or /populate body, checked before anything changes.
struct ProxyInput {
  proxy::ProxyConfig cfg;
  std::optional<proxy::AcceptMode> accept;
};

// The fields of one proxy, their JSON types only (Toxiproxy's decoder refuses a wrong type in
// any entry before anything else is looked at).
ProxyInput read_proxy_fields(const json& obj, const std::string& where) {
  if (!obj.is_object())
    bad_body(fmt::format("expected a JSON object{}", where));
  ProxyInput in;
  in.cfg.name = opt_string(obj, "name").value_or("");
  in.cfg.upstream = opt_string(obj, "upstream").value_or("");
  in.cfg.listen = opt_string(obj, "listen").value_or("");
  in.cfg.enabled = opt_bool(obj, "enabled").value_or(true);
  in.accept = opt_accept(obj);
  return in;
}

void require_fields(const ProxyInput& in, const std::string& where) {
  if (in.cfg.name.empty())
    throw ApiError(400, fmt::format("{}: name{}", kMissingField, where));
  if (in.cfg.upstream.empty())
    throw ApiError(400, fmt::format("{}: upstream{}", kMissingField, where));
}

void check_addresses(ProxyInput& in, const std::string& where) {
  if (in.cfg.listen.empty())
    in.cfg.listen = kDefaultListen;
  check_address("listen", in.cfg.listen, where);
  check_address("upstream", in.cfg.upstream, where);
}

ProxyInput read_proxy_input(const json& obj, const std::string& where) {
  ProxyInput in = read_proxy_fields(obj, where);
  require_fields(in, where);
  check_addresses(in, where);
  return in;
}

// Toxiproxy's 409 text, then which toxic: clients compare the prefix, people read the name.
std::string toxic_exists(const std::string& name) {
  return fmt::format("{}: a toxic named '{}' is on this proxy (name the new one, or remove that "
                     "one first)",
                     kToxicAlreadyExists, name);
}

// A toxic given without a name is named by toxics::default_name, from its parsed attributes.
// Their error waits until the name is checked: Toxiproxy reports a name conflict first.
std::shared_ptr<const toxics::ToxicImpl> default_named_impl(toxics::Toxic& t, const json* attrs) {
  std::shared_ptr<const toxics::ToxicImpl> impl;
  try {
    impl = toxics::make_impl(t.type, attrs ? *attrs : json::object());
  } catch (const toxics::ToxicError&) {
    // Named as Toxiproxy would; make_impl throws again once the name is known to be free.
  }
  t.name = toxics::default_name(t.type, t.stream, impl.get());
  return impl;
}

proxy::Proxy& create_or_throw(proxy::Registry& reg, const ProxyInput& in) {
  std::string err;
  proxy::Proxy* p = reg.create(in.cfg, err);
  if (!p)
    proxy_failure(err);
  if (in.accept)
    p->set_accept_mode(*in.accept);
  return *p;
}

// Toxiproxy replaces a proxy on /populate only when its listen or upstream address differs
// (Proxy.Differs: the listen address as resolved against the one bound; port 0 always differs).
bool differs(const proxy::Proxy& p, const proxy::ProxyConfig& cfg) {
  return cfg.upstream != p.upstream_address() || !p.same_listen_address(cfg.listen);
}

// One entry of /populate (AddOrReplace): the same addresses keep the proxy as it is (toxics,
// connections and enabled state included); other addresses stop it and start a new one in its
// place, and if that fails the old one stays, stopped, as in Toxiproxy.
proxy::Proxy& populate_one(proxy::Registry& registry, ProxyInput& in, size_t index) {
  // A malformed address is refused here, in order, not up front: Toxiproxy finds it only when
  // it gets there, so the entries before it are done.
  check_addresses(in, fmt::format(" at proxy {}", index));
  proxy::Proxy* existing = registry.find(in.cfg.name);
  if (existing && !differs(*existing, in.cfg)) {
    if (in.accept)
      existing->set_accept_mode(*in.accept);
    return *existing;
  }
  std::string err;
  proxy::Proxy* p = existing ? registry.replace(in.cfg, err) : registry.create(in.cfg, err);
  if (!p)
    proxy_failure(err);
  if (in.accept)
    p->set_accept_mode(*in.accept);
  return *p;
}

uint64_t total_bytes_from_client(const proxy::Proxy& p) {
  uint64_t n = p.stats().bytes_from_client;
  for (const auto& [id, s] : p.sessions())
    n += s->bytes_from_client();
  return n;
}

uint64_t total_bytes_from_upstream(const proxy::Proxy& p) {
  uint64_t n = p.stats().bytes_from_upstream;
  for (const auto& [id, s] : p.sessions())
    n += s->bytes_from_upstream();
  return n;
}

} // namespace

Api::Api(proxy::Registry& registry) : registry_(registry) {}

json Api::proxy_json(const proxy::Proxy& p) {
  json toxics = json::array();
  for (const auto& t : p.toxics())
    toxics.push_back(t.to_json());
  return {{"name", p.name()},
          {"listen", p.listen_address()},
          {"upstream", p.upstream_address()},
          {"enabled", p.enabled()},
          {"accept", std::string(accept_name(p.accept_mode()))},
          {"toxics", std::move(toxics)}};
}

Router Api::router() {
  // Every handler goes through here: the one place that maps errors to HTTP replies.
  auto wrap = [this](void (Api::*method)(Request&, Response&)) -> Handler {
    return [this, method](Request& req, Response& res) {
      // Response::json, not Response::error: messages may quote the request's bytes, and
      // json() replaces invalid UTF-8 instead of throwing.
      auto fail = [&res](int status, const std::string& message) {
        res.json(status, json{{"error", message}, {"status", status}});
      };
      try {
        (this->*method)(req, res);
        // Toxics added and removed through the API reach the traffic log at once (its own
        // poll would miss a toxic that lives shorter than its period).
        if (traffic_ && req.method != "GET") traffic_->note_toxic_changes();
      } catch (const ApiError& e) {
        fail(e.status, e.what());
      } catch (const toxics::ToxicError& e) {
        fail(400, fmt::format("{}: {}", kBadRequestBody, e.what()));
      } catch (const json::exception& e) {
        fail(400, fmt::format("{}: {}", kBadRequestBody, e.what()));
      }
    };
  };
  Router r;
  // Toxiproxy's routes (api.go).
  r.add("POST", "/reset", wrap(&Api::reset));
  r.add("GET", "/proxies", wrap(&Api::list_proxies));
  r.add("POST", "/proxies", wrap(&Api::create_proxy));
  r.add("POST", "/populate", wrap(&Api::populate));
  r.add("GET", "/proxies/{proxy}", wrap(&Api::show_proxy));
  r.add("POST", "/proxies/{proxy}", wrap(&Api::update_proxy));
  r.add("PATCH", "/proxies/{proxy}", wrap(&Api::update_proxy));
  r.add("DELETE", "/proxies/{proxy}", wrap(&Api::delete_proxy));
  r.add("GET", "/proxies/{proxy}/toxics", wrap(&Api::list_toxics));
  r.add("POST", "/proxies/{proxy}/toxics", wrap(&Api::create_toxic));
  r.add("GET", "/proxies/{proxy}/toxics/{toxic}", wrap(&Api::show_toxic));
  r.add("POST", "/proxies/{proxy}/toxics/{toxic}", wrap(&Api::update_toxic));
  r.add("PATCH", "/proxies/{proxy}/toxics/{toxic}", wrap(&Api::update_toxic));
  r.add("DELETE", "/proxies/{proxy}/toxics/{toxic}", wrap(&Api::delete_toxic));
  r.add("GET", "/version", wrap(&Api::version));
  r.add("GET", "/topology", wrap(&Api::show_topology));
  // faultline's additions.
  r.add("GET", "/proxies/{proxy}/connections", wrap(&Api::list_connections));
  r.add("DELETE", "/proxies/{proxy}/connections", wrap(&Api::drop_connections));
  r.add("GET", "/metrics", wrap(&Api::metrics));
  r.add("GET", "/proxies/{proxy}/stats", wrap(&Api::proxy_stats));
  r.add("GET", "/proxies/{proxy}/traffic", wrap(&Api::proxy_traffic));
  r.add("GET", "/log", wrap(&Api::show_log));
  r.add("POST", "/log", wrap(&Api::update_log));
  r.add("POST", "/profiles", wrap(&Api::start_profile));
  r.add("GET", "/profiles", wrap(&Api::list_profiles));
  r.add("GET", "/profiles/{name}", wrap(&Api::show_profile));
  r.add("DELETE", "/profiles/{name}", wrap(&Api::stop_profile));
  r.add("GET", "/proxies/{proxy}/clients", wrap(&Api::show_clients));
  r.add("DELETE", "/proxies/{proxy}/clients", wrap(&Api::clear_clients));
  return r;
}

proxy::Proxy& Api::find_proxy(const Request& req) {
  proxy::Proxy* p = registry_.find(req.param("proxy"));
  if (!p)
    throw ApiError(404, kProxyNotFound);
  return *p;
}

void Api::version(Request&, Response& res) {
  // Toxiproxy 2.x answers JSON (older releases answered the bare version as text).
  res.text(200, "application/json;charset=utf-8",
           fmt::format("{{\"version\": \"{}\"}}\n", FAULTLINE_VERSION));
}

void Api::show_topology(Request&, Response& res) {
  if (topology_) {
    res.json(200, topology_());
    return;
  }
  json out;
  out["mode"] = "single";
  auto& nodes = out["nodes"] = json::array();
  for (const auto& [name, p] : registry_.proxies()) {
    json n;
    n["address"] = p->upstream_address();
    n["role"] = nullptr;
    n["proxy"] = name;
    n["listen"] = p->listen_address();
    nodes.push_back(std::move(n));
  }
  res.json(200, out);
}

void Api::list_proxies(Request&, Response& res) {
  json out = json::object();
  for (const auto& [name, p] : registry_.proxies())
    out[name] = proxy_json(*p);
  res.json(200, out);
}

void Api::create_proxy(Request& req, Response& res) {
  ProxyInput in = read_proxy_input(parse_object(req.body), "");
  if (registry_.find(in.cfg.name))
    throw ApiError(409, kProxyAlreadyExists);
  proxy::Proxy& p = create_or_throw(registry_, in);
  log::info("api: proxy {} created ({} -> {})", p.name(), p.listen_address(), p.upstream_address());
  res.json(201, proxy_json(p));
}

void Api::populate(Request& req, Response& res) {
  // Toxiproxy's PopulateJson: the body is decoded and every entry's name and upstream checked
  // before anything changes; then each entry is created or replaced in order (AddOrReplace), and
  // the first failure stops the rest, keeping what was done. Every outcome is answered with the
  // proxies done so far and, on failure, the error beside them: {"error", "status", "proxies"}.
  json done = json::array();
  try {
    json body = parse_json(req.body);
    if (!body.is_array())
      bad_body("expected a JSON array of proxies");
    std::vector<ProxyInput> inputs;
    for (size_t i = 0; i < body.size(); ++i)
      inputs.push_back(read_proxy_fields(body[i], fmt::format(" at proxy {}", i + 1)));
    for (size_t i = 0; i < inputs.size(); ++i)
      require_fields(inputs[i], fmt::format(" at proxy {}", i + 1));
    for (size_t i = 0; i < inputs.size(); ++i)
      done.push_back(proxy_json(populate_one(registry_, inputs[i], i + 1)));
  } catch (const ApiError& e) {
    res.json(e.status, json{{"error", e.what()}, {"status", e.status}, {"proxies", done}});
    return;
  }
  log::info("api: populated {} proxies", done.size());
  res.json(201, json{{"proxies", std::move(done)}});
}

void Api::reset(Request&, Response& res) {
  // The running profile first: stopping it undoes its own steps, and left running it would
  // put faults back on the proxies this is about to clear.
  std::string stopped = profiles_ ? profiles_->stop_running("POST /reset") : std::string();
  for (const auto& [name, p] : registry_.proxies()) {
    std::string err;
    if (!p->set_enabled(true, err))
      throw ApiError(500, err);
    p->remove_all_toxics();
    p->set_accept_mode(proxy::AcceptMode::Normal);
  }
  log::info("api: reset (every proxy enabled, every toxic removed{})",
            stopped.empty() ? "" : ", profile " + stopped + " stopped");
  res.empty(204);
}

void Api::show_proxy(Request& req, Response& res) {
  res.json(200, proxy_json(find_proxy(req)));
}

void Api::update_proxy(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  json body = parse_object(req.body);
  // Every field is optional; all are checked before the first change.
  auto listen = opt_string(body, "listen");
  auto upstream = opt_string(body, "upstream");
  auto enabled = opt_bool(body, "enabled");
  auto accept = opt_accept(body);
  if (listen)
    check_address("listen", *listen);
  if (upstream)
    check_address("upstream", *upstream);

  std::string err;
  if (upstream && *upstream != p.upstream_address()) {
    if (!p.set_upstream(*upstream, err))
      proxy_failure(err);
    // Toxiproxy restarts a proxy whose upstream changes: its connections go with it.
    p.drop_connections(false);
  }
  if (listen && !p.set_listen(*listen, err))
    proxy_failure(err);
  if (enabled && !p.set_enabled(*enabled, err))
    proxy_failure(err);
  if (accept)
    p.set_accept_mode(*accept);
  res.json(200, proxy_json(p));
}

void Api::delete_proxy(Request& req, Response& res) {
  if (!registry_.remove(req.param("proxy")))
    throw ApiError(404, kProxyNotFound);
  log::info("api: proxy {} deleted", req.param("proxy"));
  res.empty(204);
}

void Api::list_toxics(Request& req, Response& res) {
  json out = json::array();
  for (const auto& t : find_proxy(req).toxics())
    out.push_back(t.to_json());
  res.json(200, out);
}

void Api::create_toxic(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  json body = parse_object(req.body);
  // The order of checks is Toxiproxy's (AddToxicJson): stream, type, name, then attributes.
  std::string stream_name = opt_string(body, "stream").value_or("downstream");
  std::transform(stream_name.begin(), stream_name.end(), stream_name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  toxics::Toxic t;
  if (!toxics::parse_stream(stream_name, t.stream))
    throw ApiError(400, kInvalidStream);
  t.type = opt_string(body, "type").value_or("");
  t.name = opt_string(body, "name").value_or("");
  if (!toxics::known_type(t.type))
    throw ApiError(400, kInvalidToxicType);
  const json* attrs = field(body, "attributes");
  if (t.name.empty())
    t.impl = default_named_impl(t, attrs);
  if (p.find_toxic(t.name))
    throw ApiError(409, toxic_exists(t.name));
  t.toxicity = opt_toxicity(body).value_or(1.0);
  if (!t.impl)
    t.impl = toxics::make_impl(t.type, attrs ? *attrs : json::object());
  if (std::string why = p.refuses_toxic(t); !why.empty())
    throw ApiError(400, why);
  json out = t.to_json();
  p.add_toxic(std::move(t));
  // Toxiproxy answers 200 here, not 201.
  res.json(200, out);
}

void Api::show_toxic(Request& req, Response& res) {
  const toxics::Toxic* t = find_proxy(req).find_toxic(req.param("toxic"));
  if (!t)
    throw ApiError(404, kToxicNotFound);
  res.json(200, t->to_json());
}

void Api::update_toxic(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  const toxics::Toxic* cur = p.find_toxic(req.param("toxic"));
  if (!cur)
    throw ApiError(404, kToxicNotFound);
  json body = parse_object(req.body);
  // Toxiproxy decodes the body over the existing toxic: attributes given replace those values,
  // the others stay; toxicity likewise. Name, type and stream cannot change.
  json attrs = cur->impl ? cur->impl->attributes() : json::object();
  if (const json* given = field(body, "attributes")) {
    if (!given->is_object())
      bad_body("attributes must be an object");
    for (const auto& [k, v] : given->items())
      attrs[k] = v;
  }
  toxics::Toxic t = *cur;
  t.toxicity = opt_toxicity(body).value_or(cur->toxicity);
  t.impl = toxics::make_impl(t.type, attrs);
  json out = t.to_json();
  p.update_toxic(std::move(t));
  res.json(200, out);
}

void Api::delete_toxic(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  if (!p.remove_toxic(req.param("toxic")))
    throw ApiError(404, kToxicNotFound);
  res.empty(204);
}

void Api::list_connections(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  uv_loop_t* loop = p.runtime().loop();
  uv_update_time(loop);
  uint64_t now = uv_now(loop);
  std::vector<const proxy::Session*> live;
  for (const auto& [id, s] : p.sessions())
    if (!s->closing())
      live.push_back(s.get());
  std::sort(live.begin(), live.end(),
            [](const proxy::Session* a, const proxy::Session* b) { return a->id() < b->id(); });
  json out = json::array();
  for (const proxy::Session* s : live) {
    out.push_back({{"id", s->id()},
                   {"client", s->client_address()},
                   {"age_ms", now >= s->started_ms() ? now - s->started_ms() : 0},
                   {"bytes_from_client", s->bytes_from_client()},
                   {"bytes_from_upstream", s->bytes_from_upstream()},
                   {"commands", s->commands_seen()}});
  }
  res.json(200, out);
}

void Api::drop_connections(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  bool rst = false;
  // "?reset" alone means true, as a flag.
  if (auto it = req.query.find("reset"); it != req.query.end()) {
    if (it->second.empty() || it->second == "true" || it->second == "1")
      rst = true;
    else if (it->second != "false" && it->second != "0")
      throw ApiError(400, "query parameter 'reset' must be true or false");
  }
  log::info("api: dropping {} connections of {}{}", p.session_count(), p.name(),
            rst ? " with RST" : "");
  p.drop_connections(rst);
  res.empty(204);
}

void Api::append_proxy_metrics(std::string& out) const {
  struct Family {
    const char* name;
    const char* help;
    const char* type;
  };
  const auto& proxies = registry_.proxies();
  auto each = [&](const Family& f, auto&& value) {
    append_metric_header(out, f.name, f.help, f.type);
    for (const auto& [name, p] : proxies)
      out += fmt::format("{}{{proxy=\"{}\"}} {}\n", f.name, escape_label_value(name), value(*p));
  };
  each({"faultline_connections_current", "Client connections open through the proxy.", "gauge"},
       [](const proxy::Proxy& p) { return p.session_count(); });
  each({"faultline_connections_total", "Client connections accepted by the proxy.", "counter"},
       [](const proxy::Proxy& p) { return p.stats().connections_total; });
  append_metric_header(out, "faultline_bytes_total",
                       "Bytes forwarded: upstream is client to Redis, downstream Redis to client.",
                       "counter");
  for (const auto& [name, p] : proxies) {
    std::string label = escape_label_value(name);
    out += fmt::format("faultline_bytes_total{{proxy=\"{}\",direction=\"upstream\"}} {}\n", label,
                       total_bytes_from_client(*p));
    out += fmt::format("faultline_bytes_total{{proxy=\"{}\",direction=\"downstream\"}} {}\n", label,
                       total_bytes_from_upstream(*p));
  }
  each({"faultline_toxics_active", "Toxics currently set on the proxy.", "gauge"},
       [](const proxy::Proxy& p) { return p.toxics().size(); });
  each({"faultline_connect_failures_total", "Upstream connects that failed or timed out.",
        "counter"},
       [](const proxy::Proxy& p) { return p.stats().connect_failures; });
  each({"faultline_resolve_failures_total", "Lookups of the upstream's host name that failed.",
        "counter"},
       [](const proxy::Proxy& p) { return p.stats().resolve_failures; });
  each({"faultline_fd_exhausted_total",
        "Accepts and upstream sockets that found no file descriptor free (EMFILE, ENFILE).",
        "counter"},
       [](const proxy::Proxy& p) { return p.stats().fd_exhausted; });
  each({"faultline_accept_pauses_total",
        "Times the proxy stopped accepting for a short back-off because descriptors ran out.",
        "counter"},
       [](const proxy::Proxy& p) { return p.stats().accept_pauses; });
}

std::string Api::metrics_text() const {
  std::string out;
  append_proxy_metrics(out);
  for (const auto& section : metrics_)
    section(out);
  return out;
}

profile::Manager& Api::profiles() const {
  if (!profiles_) throw ApiError(404, "profiles are not available");
  return *profiles_;
}

// The profile handlers live in control/profiles.cpp.
void Api::start_profile(Request& req, Response& res) { profile::api_start(profiles(), req, res); }
void Api::list_profiles(Request& req, Response& res) { profile::api_list(profiles(), req, res); }
void Api::show_profile(Request& req, Response& res) { profile::api_show(profiles(), req, res); }
void Api::stop_profile(Request& req, Response& res) { profile::api_stop(profiles(), req, res); }

void Api::metrics(Request&, Response& res) {
  res.text(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text());
}

void Api::proxy_stats(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  if (!command_metrics_) throw ApiError(404, "metrics are off (--no-metrics)");
  res.json(200, command_metrics_->proxy_json(p));
}

// One traffic record per line (JSON Lines, or text), until the client goes away ('ctl tail').
void Api::proxy_traffic(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  if (!traffic_) throw ApiError(404, "the traffic log is not available");
  struct Stream : observe::TrafficSubscriber {
    explicit Stream(Response r) : res(std::move(r)) {}
    bool write(std::string_view lines) override { return res.write_chunk(lines); }
    size_t pending_bytes() const override { return res.pending_bytes(); }
    Response res;
  };
  // ?format=text: the lines `--log -` writes (what `faultline ctl tail` shows).
  bool text = false;
  if (auto it = req.query.find("format"); it != req.query.end()) {
    if (it->second == "text")
      text = true;
    else if (it->second != "json")
      throw ApiError(400, "query parameter 'format' must be json or text");
  }
  if (!res.start_stream(200, text ? "text/plain; charset=utf-8" : "application/x-ndjson")) return;
  uint64_t id = traffic_->subscribe(p.name(), std::make_unique<Stream>(res), text);
  res.on_close([t = traffic_, id] { t->unsubscribe(id); });
}

void Api::show_log(Request&, Response& res) {
  if (!traffic_) throw ApiError(404, "the traffic log is not available");
  res.json(200, traffic_->status_json());
}

// Switches the traffic log and its filters at run time: {"path": "/tmp/x.jsonl"} starts it,
// {"enabled": false} stops it, other fields as GET /log shows them.
void Api::update_log(Request& req, Response& res) {
  if (!traffic_) throw ApiError(404, "the traffic log is not available");
  observe::TrafficLogConfig cfg = traffic_->config();
  try {
    cfg.apply_json(parse_json(req.body));
  } catch (const std::invalid_argument& e) {
    throw ApiError(400, fmt::format("{}: {}", kBadRequestBody, e.what()));
  }
  confine_log_file(traffic_->config().path, cfg);
  std::string err;
  if (!traffic_->configure(cfg, err))
    throw ApiError(err.rfind("will not ", 0) == 0 ? 403 : 400, err);
  log::info("api: traffic log {}", cfg.path.empty() ? std::string("off") : "to " + cfg.path);
  res.json(200, traffic_->status_json());
}

// A path a request names is a file faultline will create or append to: only under --log-dir,
// never through a symbolic link, and never onto a file that is not a faultline log in the same
// format. "-" (faultline's stdout) names no file; the path already in use (from --log) is kept.
void Api::confine_log_file(const std::string& previous_path,
                           observe::TrafficLogConfig& cfg) const {
  if (cfg.path.empty() || cfg.path == "-" || cfg.path == previous_path) return;
  if (file_dir_.empty())
    throw ApiError(403, fmt::format("field 'path': the API may not write files: faultline was "
                                    "started without --log-dir"));
  std::string full, err;
  if (!file_dir_.resolve(cfg.path, full, err))
    throw ApiError(403, fmt::format("field 'path': {}", err));
  cfg.path = full;
  if (cfg.path == previous_path) return;
  cfg.open_file = [dir = file_dir_, full, format = cfg.effective_format()](std::string& e) {
    int fd = dir.open_append(full, e);
    if (fd < 0) return -1;
    constexpr size_t kHead = 64 << 10; // a record is far shorter: no line break in this, no log
    std::string head, why;
    bool ok = uv::read_head(fd, kHead, head, why);
    if (ok && !observe::may_append_traffic_log(head, head.size() < kHead, format, why)) ok = false;
    if (!ok) {
      uv::close_file(fd);
      e = fmt::format("will not append to {}: {}", full, why);
      return -1;
    }
    return fd;
  };
}

// ?client=NAME (a client's name, else its address), ?since_ms=T, ?until_ms=T (the JSON's now_ms
// clock): a view of one client and/or a time range.
void Api::show_clients(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  if (!clients_) throw ApiError(404, "client verdicts are not recorded");
  observe::ClientVerdicts::Query q;
  if (auto it = req.query.find("client"); it != req.query.end()) {
    if (it->second.empty())
      throw ApiError(400, "query parameter 'client' must name a client (its name or address)");
    q.client = it->second;
  }
  auto time = [&](const char* name) -> std::optional<double> {
    auto it = req.query.find(name);
    if (it == req.query.end()) return std::nullopt;
    const std::string& v = it->second;
    double ms = 0;
    size_t used = 0;
    try {
      ms = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (v.empty() || used != v.size() || !std::isfinite(ms) || ms < 0)
      throw ApiError(400, fmt::format("query parameter '{}' must be a non-negative number of "
                                      "milliseconds (now_ms's clock), not '{}'",
                                      name, v));
    return ms;
  };
  q.since_ms = time("since_ms");
  q.until_ms = time("until_ms");
  if (q.since_ms && q.until_ms && *q.until_ms < *q.since_ms)
    throw ApiError(400, "query parameter 'until_ms' must not be before 'since_ms'");
  res.json(200, clients_->json_for(p, q));
}

void Api::clear_clients(Request& req, Response& res) {
  proxy::Proxy& p = find_proxy(req);
  if (!clients_) throw ApiError(404, "client verdicts are not recorded");
  clients_->clear(p.name());
  res.empty(204);
}

} // namespace faultline::control
