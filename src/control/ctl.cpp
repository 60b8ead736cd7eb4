#include "control/ctl.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "control/http_client.h"
#include "control/http_server.h" // percent_encode_segment

#ifndef FAULTLINE_VERSION
#define FAULTLINE_VERSION "unknown"
#endif

namespace faultline::control {

namespace {

using json = nlohmann::json;

constexpr const char* kUsage =
    R"(usage: faultline ctl [--api HOST:PORT] [--token TOKEN] [--json] COMMAND ...

Drives a running faultline through its Toxiproxy-compatible API (default 127.0.0.1:8474;
the token may also come from FAULTLINE_API_TOKEN). --json prints the API's JSON instead of text.

proxies
  list                                      every proxy, its addresses, state and toxics
  inspect NAME                              one proxy and its toxics
  create NAME --upstream HOST:PORT [--listen HOST:PORT] [--disabled]
  delete NAME
  enable NAME | disable NAME | toggle NAME
  accept NAME normal|reset|hang             how new connections are met (reset: RST at once,
                                            hang: accepted, never answered)
  populate FILE                             create or replace the proxies of a JSON list
  reset                                     stop the running profile, enable every proxy,
                                            remove every toxic

toxics
  toxic add NAME --type TYPE [--toxic-name N] [--stream upstream|downstream]
                 [--toxicity 0..1] [--attribute KEY=VALUE ...]
  toxic update NAME TOXIC [--toxicity 0..1] [--attribute KEY=VALUE ...]
  toxic remove NAME TOXIC
  toxic list NAME                           with the RESP toxics' matched/injected counters

chaos profiles
  profile run FILE [--replace] [--speed N]  start a profile (TOML or JSON) on the server
  profile stop [NAME]                       stop it, undoing what it injected (default: the
                                            one running)
  profile status [NAME]                     its report (default: the running or latest one)
  profile list                              the running profile and the last ones that ended

connections, clients and traffic
  connections NAME                          current connections through the proxy
  drop NAME                                 drop them (new ones are still accepted)
  clients NAME [--clear]                    what the clients did about the faults (verdicts);
                                            --clear forgets it
    [--client C] [--since-ms T] [--until-ms T]  one client (its name, else its address) and/or
                                            a time range (ms on the verdicts' now_ms clock)
  stats NAME                                per-command counters and latencies
  metrics                                   every metric, in Prometheus's text format
  log                                       the traffic log's state
  log on PATH [--format json|text]          start the traffic log (PATH inside the server's
                                            --log-dir, or - for its stdout)
  log off                                   stop it
  tail NAME                                 stream the proxy's traffic as `--log -` prints it,
                                            until Ctrl-C (JSON Lines with --json)

  version                                   client and server versions

Attribute values: numbers become JSON numbers, true/false booleans, a,b,c a list for list
attributes (commands), anything else a string; KEY:=JSON passes raw JSON.
Exit status: 0 done, 1 the API refused or could not be reached, 2 usage error.
)";

// Attributes whose value is a list, so "GET,SET" means ["GET","SET"]. Elsewhere a comma is text.
const std::set<std::string> kListAttributes = {"commands"};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The command line after "ctl": positionals, and options that may appear anywhere.
struct Args {
  std::vector<std::string> positional;
  std::map<std::string, std::vector<std::string>> values; // --name VALUE (repeatable)
  std::set<std::string> flags;                            // --name

  const std::string* value(const std::string& name) const {
    auto it = values.find(name);
    return it == values.end() ? nullptr : &it->second.back();
  }
  bool has(const std::string& name) const { return flags.count(name) != 0 || values.count(name); }
};

const std::set<std::string> kValueOptions = {"api",        "token",  "listen",   "upstream",
                                             "type",       "stream", "toxicity", "attribute",
                                             "toxic-name", "speed",  "format",
                                             "client",     "since-ms", "until-ms"};
const std::set<std::string> kFlagOptions = {"json", "help", "disabled", "replace", "clear"};
const std::set<std::string> kGlobalOptions = {"api", "token", "json", "help"};

Args parse_args(const std::vector<std::string>& argv) {
  Args a;
  bool only_positional = false;
  for (std::size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (only_positional || arg.size() < 2 || arg[0] != '-') {
      a.positional.push_back(arg);
      continue;
    }
    if (arg == "--") {
      only_positional = true;
      continue;
    }
    std::string name;
    std::optional<std::string> inline_value;
    if (arg == "-h") {
      name = "help";
    } else if (arg == "-a") {
      name = "attribute";
    } else if (arg.rfind("--", 0) == 0) {
      name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
    } else {
      throw UsageError(fmt::format("unknown option '{}'", arg));
    }
    if (kFlagOptions.count(name) != 0) {
      if (inline_value)
        throw UsageError(fmt::format("option '--{}' takes no value", name));
      a.flags.insert(name);
    } else if (kValueOptions.count(name) != 0) {
      if (!inline_value) {
        if (i + 1 >= argv.size())
          throw UsageError(fmt::format("option '--{}' needs a value", name));
        inline_value = argv[++i];
      }
      a.values[name].push_back(*inline_value);
    } else {
      throw UsageError(fmt::format("unknown option '--{}'", name));
    }
  }
  return a;
}

// Parses "HOST:PORT", "[V6]:PORT", "http://HOST:PORT" or "HOST" (port 8474).
std::pair<std::string, std::uint16_t> parse_api_address(std::string s) {
  if (s.rfind("http://", 0) == 0)
    s = s.substr(7);
  while (!s.empty() && s.back() == '/')
    s.pop_back();
  std::string host = s;
  std::string port = "8474";
  if (!s.empty() && s.front() == '[') {
    const auto close = s.find(']');
    if (close == std::string::npos)
      throw UsageError(fmt::format("bad --api address '{}'", s));
    host = s.substr(1, close - 1);
    if (close + 1 < s.size()) {
      if (s[close + 1] != ':')
        throw UsageError(fmt::format("bad --api address '{}'", s));
      port = s.substr(close + 2);
    }
  } else if (auto colon = s.rfind(':'); colon != std::string::npos) {
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  unsigned value = 0;
  auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (host.empty() || ec != std::errc() || ptr != port.data() + port.size() || value == 0 ||
      value > 65535) {
    throw UsageError(fmt::format("bad --api address '{}' (want HOST:PORT)", s));
  }
  return {host, static_cast<std::uint16_t>(value)};
}

bool is_integer(std::string_view s) {
  if (!s.empty() && s.front() == '-')
    s.remove_prefix(1);
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Only plain decimal forms count as numbers: "1e3" or "0x10" stay strings.
bool is_decimal(std::string_view s) {
  const auto dot = s.find('.');
  if (dot == std::string_view::npos)
    return false;
  const std::string_view frac = s.substr(dot + 1);
  return is_integer(s.substr(0, dot)) && !frac.empty() &&
         std::all_of(frac.begin(), frac.end(), [](char c) { return c >= '0' && c <= '9'; });
}

json attribute_value(const std::string& key, const std::string& text) {
  if (kListAttributes.count(key) != 0) {
    json list = json::array();
    std::size_t start = 0;
    while (start <= text.size()) {
      auto comma = text.find(',', start);
      std::string item = text.substr(start, comma == std::string::npos ? comma : comma - start);
      item.erase(0, item.find_first_not_of(' '));
      item.erase(item.find_last_not_of(' ') + 1);
      if (!item.empty())
        list.push_back(item);
      if (comma == std::string::npos)
        break;
      start = comma + 1;
    }
    return list;
  }
  if (text == "true")
    return true;
  if (text == "false")
    return false;
  if (is_integer(text)) {
    long long v = 0;
    auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
    if (ec == std::errc() && ptr == text.data() + text.size())
      return v;
  }
  if (is_decimal(text))
    return std::stod(text);
  return text;
}

json parse_attributes(const Args& a) {
  json attrs = json::object();
  auto it = a.values.find("attribute");
  if (it == a.values.end())
    return attrs;
  for (const std::string& kv : it->second) {
    const auto eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      throw UsageError(fmt::format("attribute '{}' is not KEY=VALUE", kv));
    }
    std::string key = kv.substr(0, eq);
    json value;
    if (key.back() == ':') { // KEY:=JSON
      key.pop_back();
      try {
        value = json::parse(kv.substr(eq + 1));
      } catch (const json::exception&) {
        throw UsageError(fmt::format("attribute '{}' is not valid JSON after ':='", kv));
      }
    } else {
      value = attribute_value(key, kv.substr(eq + 1));
    }
    if (key.empty())
      throw UsageError(fmt::format("attribute '{}' has no name", kv));
    if (attrs.contains(key))
      throw UsageError(fmt::format("attribute '{}' given twice", key));
    attrs[key] = std::move(value);
  }
  return attrs;
}

double parse_toxicity(const std::string& text) {
  std::size_t used = 0;
  double v = -1;
  try {
    v = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || !(v >= 0.0 && v <= 1.0)) {
    throw UsageError(fmt::format("--toxicity must be a number from 0 to 1, not '{}'", text));
  }
  return v;
}

// A scalar as a person reads it: strings without quotes, lists comma-joined.
std::string plain(const json& v) {
  if (v.is_string())
    return v.get<std::string>();
  if (v.is_null())
    return "-";
  if (v.is_array()) {
    std::string out;
    for (const auto& item : v) {
      if (!out.empty())
        out += ",";
      out += plain(item);
    }
    return out;
  }
  return v.dump();
}

void print_table(std::ostream& out, const std::vector<std::string>& header,
                 const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(header.size());
  for (std::size_t i = 0; i < header.size(); ++i)
    width[i] = header[i].size();
  for (const auto& row : rows) {
    for (std::size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  auto line = [&](const std::vector<std::string>& cells) {
    std::string s;
    for (std::size_t i = 0; i < cells.size(); ++i) {
      s += cells[i];
      if (i + 1 < cells.size())
        s += std::string(width[i] - cells[i].size() + 2, ' ');
    }
    out << s << "\n";
  };
  line(header);
  for (const auto& row : rows)
    line(row);
}

// The counters of a RESP toxic (GET shows them among its attributes): shown in their own columns.
bool is_counter(const std::string& key) { return key == "matched" || key == "injected"; }

std::string toxic_attributes(const json& toxic) {
  std::string out;
  if (toxic.contains("attributes") && toxic["attributes"].is_object()) {
    for (const auto& [k, v] : toxic["attributes"].items()) {
      if (is_counter(k))
        continue;
      if (!out.empty())
        out += " ";
      out += k + "=" + plain(v);
    }
  }
  return out.empty() ? "-" : out;
}

std::string field(const json& obj, const char* name) {
  return obj.is_object() && obj.contains(name) ? plain(obj[name]) : std::string("-");
}

std::string counter(const json& toxic, const char* name) {
  return toxic.contains("attributes") ? field(toxic["attributes"], name) : std::string("-");
}

// The counter columns appear when a RESP toxic is listed.
void print_toxics(std::ostream& out, const json& toxics) {
  const bool counters = std::any_of(toxics.begin(), toxics.end(), [](const json& t) {
    return t.contains("attributes") && t["attributes"].is_object() &&
           t["attributes"].contains("matched");
  });
  std::vector<std::vector<std::string>> rows;
  for (const auto& t : toxics) {
    std::vector<std::string> row = {field(t, "name"), field(t, "type"), field(t, "stream"),
                                    field(t, "toxicity")};
    if (counters) {
      row.push_back(counter(t, "matched"));
      row.push_back(counter(t, "injected"));
    }
    row.push_back(toxic_attributes(t));
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header = {"TOXIC", "TYPE", "STREAM", "TOXICITY"};
  if (counters)
    header.insert(header.end(), {"MATCHED", "INJECTED"});
  header.push_back("ATTRIBUTES");
  print_table(out, header, rows);
}

// JSON of a shape ctl does not know in advance (stats, client verdicts) as indented
// "key: value" lines; arrays of scalars on one line.
void print_tree(std::ostream& out, const json& j, int indent = 0) {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  auto scalar_list = [](const json& a) {
    return std::all_of(a.begin(), a.end(), [](const json& x) { return !x.is_structured(); });
  };
  if (j.is_object()) {
    for (const auto& [k, v] : j.items()) {
      if (v.is_structured() && !v.empty() && !(v.is_array() && scalar_list(v))) {
        out << pad << k << ":\n";
        print_tree(out, v, indent + 2);
      } else {
        out << pad << k << ": " << (v.is_structured() && v.empty() ? "-" : plain(v)) << "\n";
      }
    }
  } else if (j.is_array()) {
    for (const auto& v : j) {
      if (v.is_structured()) {
        out << pad << "-\n";
        print_tree(out, v, indent + 2);
      } else {
        out << pad << "- " << plain(v) << "\n";
      }
    }
  } else {
    out << pad << plain(j) << "\n";
  }
}

std::string seconds(const json& ms) {
  return ms.is_number() ? fmt::format("{:.1f}s", ms.get<double>() / 1000.0) : std::string("-");
}

// A profile's report (GET /profiles/{name}) for a person.
void print_profile(std::ostream& out, const json& r) {
  out << "profile " << field(r, "name") << ": " << field(r, "state");
  if (r.contains("stopped_by") && r["stopped_by"].is_string())
    out << " (stopped by " << r["stopped_by"].get<std::string>() << ")";
  out << ", " << seconds(r.value("elapsed_ms", json())) << " of " << field(r, "length")
      << (r.value("loop", false) ? " (looping, pass " + field(r, "pass") + ")" : "") << "\n";
  out << "  source: " << field(r, "source") << ", seed " << field(r, "seed") << ", speed "
      << field(r, "speed") << "x\n";
  if (r.contains("active") && r["active"].is_array() && !r["active"].empty())
    out << "  active: " << plain(r["active"]) << "\n";
  if (r.contains("steps") && r["steps"].is_array() && !r["steps"].empty()) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& st : r["steps"])
      rows.push_back({seconds(st.value("started_ms", json())),
                      seconds(st.value("ended_ms", json())), field(st, "label"),
                      field(st, "proxy"), field(st, "injected")});
    std::ostringstream table;
    print_table(table, {"START", "END", "STEP", "PROXY", "INJECTED"}, rows);
    std::istringstream lines(table.str());
    for (std::string line; std::getline(lines, line);)
      out << "  " << line << "\n";
  }
  if (r.contains("expect") && r["expect"].is_object()) {
    const json& e = r["expect"];
    out << "  expectations: "
        << (e.value("decided", false) ? (e.value("failed", false) ? "FAILED" : "passed")
                                      : "undecided")
        << "\n";
    if (e.contains("verdicts"))
      for (const auto& v : e["verdicts"])
        out << "    " << field(v, "proxy") << " " << field(v, "key") << ": expected "
            << field(v, "expected") << ", measured " << field(v, "measured") << " ("
            << field(v, "state") << ")\n";
  }
}

// An array of objects of a shape ctl does not know in advance (connections): one column per
// key, well-known keys first.
void print_objects(std::ostream& out, const json& items) {
  static const std::vector<std::string> preferred = {"id",     "client",   "upstream",  "state",
                                                     "age_ms", "bytes_up", "bytes_down"};
  std::vector<std::string> columns;
  for (const auto& key : preferred) {
    for (const auto& item : items) {
      if (item.is_object() && item.contains(key)) {
        columns.push_back(key);
        break;
      }
    }
  }
  for (const auto& item : items) {
    if (!item.is_object())
      continue;
    for (const auto& [key, value] : item.items()) {
      if (std::find(columns.begin(), columns.end(), key) == columns.end())
        columns.push_back(key);
    }
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& item : items) {
    std::vector<std::string> row;
    for (const auto& c : columns)
      row.push_back(item.is_object() && item.contains(c) ? plain(item[c]) : "-");
    rows.push_back(std::move(row));
  }
  std::vector<std::string> header;
  for (auto c : columns) {
    std::transform(c.begin(), c.end(), c.begin(),
                   [](unsigned char ch) { return std::toupper(ch); });
    header.push_back(c);
  }
  print_table(out, header, rows);
}

class Ctl {
public:
  Ctl(Args args, std::ostream& out, std::ostream& err, const std::string& env_token)
      : a_(std::move(args)), out_(out), err_(err) {
    auto [host, port] = parse_api_address(a_.value("api") ? *a_.value("api") : "127.0.0.1:8474");
    const std::string token = a_.value("token") ? *a_.value("token") : env_token;
    client_ = std::make_unique<HttpClient>(host, port, token);
    client_->set_user_agent("faultline-ctl/" FAULTLINE_VERSION);
    json_ = a_.flags.count("json") != 0;
  }

  int run() {
    const auto& p = a_.positional;
    const std::string& cmd = p[0];
    if (cmd == "list")
      return list();
    if (cmd == "inspect")
      return inspect();
    if (cmd == "create")
      return create();
    if (cmd == "delete")
      return remove_proxy();
    if (cmd == "enable" || cmd == "disable")
      return set_enabled(cmd == "enable");
    if (cmd == "toggle")
      return toggle();
    if (cmd == "toxic")
      return toxic();
    if (cmd == "toxics")
      return toxic_list(1);
    if (cmd == "connections")
      return connections();
    if (cmd == "drop")
      return drop();
    if (cmd == "reset")
      return reset();
    if (cmd == "tail")
      return tail();
    if (cmd == "version")
      return version();
    if (cmd == "accept")
      return accept();
    if (cmd == "populate")
      return populate();
    if (cmd == "profile" || cmd == "profiles")
      return profile();
    if (cmd == "clients")
      return clients();
    if (cmd == "stats")
      return stats();
    if (cmd == "metrics")
      return metrics();
    if (cmd == "log")
      return log();
    throw UsageError(fmt::format("unknown command '{}'", cmd));
  }

private:
  // Positionals after the command words, exactly `n` of them, named for the error message.
  void expect_args(std::size_t skip, const std::vector<const char*>& names,
                   const std::set<std::string>& options = {}) {
    const auto& p = a_.positional;
    std::string usage = p[0];
    if (skip > 1)
      usage += " " + p[1];
    for (const char* n : names)
      usage += std::string(" ") + n;
    if (p.size() < skip + names.size()) {
      throw UsageError(fmt::format("missing {} (usage: ctl {})", names[p.size() - skip], usage));
    }
    if (p.size() > skip + names.size()) {
      throw UsageError(
          fmt::format("unexpected argument '{}' (usage: ctl {})", p[skip + names.size()], usage));
    }
    for (const auto& [name, v] : a_.values) {
      if (kGlobalOptions.count(name) == 0 && options.count(name) == 0) {
        throw UsageError(fmt::format("option '--{}' does not apply to 'ctl {}'", name, usage));
      }
    }
    for (const auto& name : a_.flags) {
      if (kGlobalOptions.count(name) == 0 && options.count(name) == 0) {
        throw UsageError(fmt::format("option '--{}' does not apply to 'ctl {}'", name, usage));
      }
    }
  }

  static std::string proxy_path(const std::string& name) {
    return "/proxies/" + percent_encode_segment(name);
  }

  // Sends a request; on failure prints why and returns nullopt. The body is parsed when JSON.
  std::optional<json> call(std::string_view method, const std::string& path,
                           const json* body = nullptr) {
    HttpResult r = client_->request(method, path, body ? body->dump() : std::string());
    if (!r.ok()) {
      err_ << "faultline ctl: " << r.error << "\n";
      return std::nullopt;
    }
    json parsed = json::parse(r.body, nullptr, false);
    if (r.status >= 400) {
      report_error(r.status, parsed, r.body);
      return std::nullopt;
    }
    if (r.body.empty())
      return json();
    if (parsed.is_discarded())
      return json(r.body); // e.g. an old plain-text /version
    return parsed;
  }

  void report_error(int status, const json& parsed, const std::string& raw) {
    if (parsed.is_object() && parsed.contains("error") && parsed["error"].is_string()) {
      err_ << "faultline ctl: " << parsed["error"].get<std::string>() << "\n";
    } else {
      std::string text = raw;
      while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
        text.pop_back();
      err_ << "faultline ctl: HTTP " << status << " " << status_reason(status)
           << (text.empty() ? "" : ": " + text) << "\n";
    }
  }

  void print_json(const json& j) { out_ << j.dump(2) << "\n"; }

  int list() {
    expect_args(1, {});
    auto r = call("GET", "/proxies");
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    if (!r->is_object() || r->empty()) {
      out_ << "no proxies\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& [name, p] : r->items()) { // nlohmann's object is ordered by key
      std::string toxics;
      if (p.contains("toxics") && p["toxics"].is_array()) {
        for (const auto& t : p["toxics"])
          toxics += (toxics.empty() ? "" : ",") + field(t, "name");
      }
      rows.push_back({name, field(p, "listen"), field(p, "upstream"), field(p, "enabled"),
                      toxics.empty() ? "-" : toxics});
    }
    print_table(out_, {"NAME", "LISTEN", "UPSTREAM", "ENABLED", "TOXICS"}, rows);
    return 0;
  }

  int inspect() {
    expect_args(1, {"NAME"});
    auto r = call("GET", proxy_path(a_.positional[1]));
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << "name:      " << field(*r, "name") << "\n"
         << "listen:    " << field(*r, "listen") << "\n"
         << "upstream:  " << field(*r, "upstream") << "\n"
         << "enabled:   " << field(*r, "enabled") << "\n";
    const json toxics = r->contains("toxics") ? (*r)["toxics"] : json::array();
    if (!toxics.is_array() || toxics.empty()) {
      out_ << "toxics:    none\n";
    } else {
      out_ << "\n";
      print_toxics(out_, toxics);
    }
    return 0;
  }

  int create() {
    expect_args(1, {"NAME"}, {"listen", "upstream", "disabled"});
    if (!a_.value("upstream"))
      throw UsageError("create needs --upstream HOST:PORT");
    json body = {{"name", a_.positional[1]},
                 {"upstream", *a_.value("upstream")},
                 {"enabled", a_.flags.count("disabled") == 0}};
    if (a_.value("listen"))
      body["listen"] = *a_.value("listen");
    auto r = call("POST", "/proxies", &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << fmt::format("created proxy {}: {} -> {}{}\n", field(*r, "name"), field(*r, "listen"),
                        field(*r, "upstream"), r->value("enabled", true) ? "" : " (disabled)");
    return 0;
  }

  int remove_proxy() {
    expect_args(1, {"NAME"});
    if (!call("DELETE", proxy_path(a_.positional[1])))
      return 1;
    if (!json_)
      out_ << "deleted proxy " << a_.positional[1] << "\n";
    return 0;
  }

  int set_enabled(bool enabled) {
    expect_args(1, {"NAME"});
    return update_enabled(a_.positional[1], enabled);
  }

  int update_enabled(const std::string& name, bool enabled) {
    const json body = {{"enabled", enabled}};
    auto r = call("POST", proxy_path(name), &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << "proxy " << name << (enabled ? " enabled" : " disabled") << "\n";
    return 0;
  }

  int toggle() {
    expect_args(1, {"NAME"});
    auto r = call("GET", proxy_path(a_.positional[1]));
    if (!r)
      return 1;
    const bool enabled = r->is_object() && r->value("enabled", false);
    return update_enabled(a_.positional[1], !enabled);
  }

  int toxic() {
    const auto& p = a_.positional;
    if (p.size() < 2)
      throw UsageError("missing toxic command (add, update, remove, list)");
    const std::string& sub = p[1];
    if (sub == "add")
      return toxic_add();
    if (sub == "update")
      return toxic_update();
    if (sub == "remove" || sub == "delete")
      return toxic_remove();
    if (sub == "list")
      return toxic_list(2);
    throw UsageError(fmt::format("unknown toxic command '{}' (add, update, remove, list)", sub));
  }

  int toxic_add() {
    expect_args(2, {"NAME"}, {"type", "toxic-name", "stream", "toxicity", "attribute"});
    if (!a_.value("type"))
      throw UsageError("toxic add needs --type (e.g. --type latency)");
    json body = {{"type", *a_.value("type")}, {"attributes", parse_attributes(a_)}};
    if (a_.value("toxic-name"))
      body["name"] = *a_.value("toxic-name");
    if (const std::string* s = a_.value("stream")) {
      if (*s != "upstream" && *s != "downstream") {
        throw UsageError(fmt::format("--stream must be upstream or downstream, not '{}'", *s));
      }
      body["stream"] = *s;
    }
    if (a_.value("toxicity"))
      body["toxicity"] = parse_toxicity(*a_.value("toxicity"));
    const std::string& proxy = a_.positional[2];
    auto r = call("POST", proxy_path(proxy) + "/toxics", &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << fmt::format("added toxic {} to {}: {} on {}, toxicity {}, {}\n", field(*r, "name"),
                        proxy, field(*r, "type"), field(*r, "stream"), field(*r, "toxicity"),
                        toxic_attributes(*r));
    return 0;
  }

  int toxic_update() {
    expect_args(2, {"NAME", "TOXIC"}, {"toxicity", "attribute"});
    json body = json::object();
    if (a_.value("toxicity"))
      body["toxicity"] = parse_toxicity(*a_.value("toxicity"));
    json attrs = parse_attributes(a_);
    if (!attrs.empty())
      body["attributes"] = std::move(attrs);
    if (body.empty())
      throw UsageError("toxic update needs --toxicity or --attribute KEY=VALUE");
    const std::string& proxy = a_.positional[2];
    auto r = call("POST", proxy_path(proxy) + "/toxics/" + percent_encode_segment(a_.positional[3]),
                  &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << fmt::format("updated toxic {} on {}: toxicity {}, {}\n", field(*r, "name"), proxy,
                        field(*r, "toxicity"), toxic_attributes(*r));
    return 0;
  }

  int toxic_remove() {
    expect_args(2, {"NAME", "TOXIC"});
    const std::string& proxy = a_.positional[2];
    const std::string& name = a_.positional[3];
    if (!call("DELETE", proxy_path(proxy) + "/toxics/" + percent_encode_segment(name)))
      return 1;
    if (!json_)
      out_ << "removed toxic " << name << " from " << proxy << "\n";
    return 0;
  }

  int toxic_list(std::size_t skip) {
    expect_args(skip, {"NAME"});
    auto r = call("GET", proxy_path(a_.positional[skip]) + "/toxics");
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    if (!r->is_array() || r->empty()) {
      out_ << "no toxics on " << a_.positional[skip] << "\n";
      return 0;
    }
    print_toxics(out_, *r);
    return 0;
  }

  int connections() {
    expect_args(1, {"NAME"});
    auto r = call("GET", proxy_path(a_.positional[1]) + "/connections");
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    json items = *r;
    if (items.is_object() && items.contains("connections"))
      items = items["connections"];
    if (!items.is_array() || items.empty()) {
      out_ << "no connections through " << a_.positional[1] << "\n";
      return 0;
    }
    print_objects(out_, items);
    return 0;
  }

  int drop() {
    expect_args(1, {"NAME"});
    auto r = call("DELETE", proxy_path(a_.positional[1]) + "/connections");
    if (!r)
      return 1;
    if (json_) {
      if (!r->is_null())
        print_json(*r);
      return 0;
    }
    if (r->is_object() && r->contains("dropped")) {
      out_ << "dropped " << plain((*r)["dropped"]) << " connections of " << a_.positional[1]
           << "\n";
    } else {
      out_ << "dropped the connections of " << a_.positional[1] << "\n";
    }
    return 0;
  }

  int reset() {
    expect_args(1, {});
    if (!call("POST", "/reset"))
      return 1;
    if (!json_)
      out_ << "reset: every proxy enabled, every toxic removed, no profile running\n";
    return 0;
  }

  int tail() {
    expect_args(1, {"NAME"});
    // The server formats the lines: the text ones are exactly what `--log -` prints.
    const std::string path =
        proxy_path(a_.positional[1]) + "/traffic" + (json_ ? "" : "?format=text");
    HttpResult r = client_->stream(
        "GET", path, [this](std::string_view data) {
          out_.write(data.data(), static_cast<std::streamsize>(data.size()));
          out_.flush();
          return static_cast<bool>(out_);
        });
    if (!r.ok()) {
      err_ << "faultline ctl: " << r.error << "\n";
      return 1;
    }
    if (r.status >= 400) {
      report_error(r.status, json::parse(r.body, nullptr, false), r.body);
      return 1;
    }
    return 0;
  }

  int accept() {
    expect_args(1, {"NAME", "MODE"});
    const std::string& mode = a_.positional[2];
    if (mode != "normal" && mode != "reset" && mode != "hang")
      throw UsageError(fmt::format("accept mode must be normal, reset or hang, not '{}'", mode));
    const json body = {{"accept", mode}};
    auto r = call("POST", proxy_path(a_.positional[1]), &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << "proxy " << a_.positional[1] << ": accept " << field(*r, "accept") << "\n";
    return 0;
  }

  static std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in)
      throw UsageError(fmt::format("cannot read '{}'", path));
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  int populate() {
    expect_args(1, {"FILE"});
    json body = json::parse(read_file(a_.positional[1]), nullptr, false);
    if (body.is_discarded() || !body.is_array())
      throw UsageError(fmt::format("'{}' is not a JSON list of proxies", a_.positional[1]));
    auto r = call("POST", "/populate", &body);
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    const json proxies = r->is_object() ? r->value("proxies", json::array()) : json::array();
    for (const auto& p : proxies)
      out_ << "proxy " << field(p, "name") << ": " << field(p, "listen") << " -> "
           << field(p, "upstream") << "\n";
    return 0;
  }

  int profile() {
    const auto& p = a_.positional;
    if (p[0] == "profiles" || p.size() < 2 || p[1] == "list")
      return profile_list(p.size() < 2 ? 1 : 2);
    const std::string& sub = p[1];
    if (sub == "run" || sub == "start")
      return profile_run();
    if (sub == "stop")
      return profile_stop();
    if (sub == "status" || sub == "show")
      return profile_status();
    throw UsageError(fmt::format("unknown profile command '{}' (run, stop, status, list)", sub));
  }

  int profile_list(std::size_t skip) {
    expect_args(skip, {});
    auto r = call("GET", "/profiles");
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    if (!r->is_array() || r->empty()) {
      out_ << "no profiles have run\n";
      return 0;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : *r)
      rows.push_back({field(x, "name"), field(x, "state"), seconds(x.value("elapsed_ms", json())),
                      field(x, "length"), x.contains("active") ? plain(x["active"]) : "-"});
    print_table(out_, {"PROFILE", "STATE", "ELAPSED", "LENGTH", "ACTIVE"}, rows);
    return 0;
  }

  int profile_run() {
    expect_args(2, {"FILE"}, {"replace", "speed"});
    std::string query;
    if (a_.flags.count("replace"))
      query += "replace=true";
    if (const std::string* speed = a_.value("speed"))
      query += (query.empty() ? "" : "&") + std::string("speed=") + *speed;
    const std::string text = read_file(a_.positional[2]);
    const bool is_json = text.find_first_not_of(" \t\r\n") != std::string::npos &&
                         text[text.find_first_not_of(" \t\r\n")] == '{';
    HttpResult res = client_->request("POST", "/profiles" + (query.empty() ? "" : "?" + query),
                                      text, is_json ? "application/json" : "application/toml");
    if (!res.ok()) {
      err_ << "faultline ctl: " << res.error << "\n";
      return 1;
    }
    json r = json::parse(res.body, nullptr, false);
    if (res.status >= 400) {
      report_error(res.status, r, res.body);
      return 1;
    }
    if (json_) {
      print_json(r);
      return 0;
    }
    print_profile(out_, r);
    return 0;
  }

  // The profile a command names, or else the one running (for stop) or the latest (status).
  std::optional<std::string> profile_name(std::size_t at, bool running_only) {
    if (a_.positional.size() > at)
      return a_.positional[at];
    auto r = call("GET", "/profiles");
    if (!r)
      return std::nullopt;
    if (r->is_array()) {
      for (const auto& x : *r)
        if (!running_only || x.value("state", "") == "running")
          return x.value("name", "");
    }
    err_ << "faultline ctl: " << (running_only ? "no profile is running" : "no profile has run")
         << "\n";
    return std::nullopt;
  }

  int profile_stop() {
    if (a_.positional.size() > 3)
      throw UsageError(fmt::format("unexpected argument '{}' (usage: ctl profile stop [NAME])",
                                   a_.positional[3]));
    expect_args(a_.positional.size() > 2 ? 3 : 2, {});
    auto name = profile_name(2, true);
    if (!name)
      return 1;
    if (!call("DELETE", "/profiles/" + percent_encode_segment(*name)))
      return 1;
    auto r = call("GET", "/profiles/" + percent_encode_segment(*name));
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    out_ << "stopped profile " << *name << "\n";
    print_profile(out_, *r);
    return 0;
  }

  int profile_status() {
    if (a_.positional.size() > 3)
      throw UsageError(fmt::format("unexpected argument '{}' (usage: ctl profile status [NAME])",
                                   a_.positional[3]));
    expect_args(a_.positional.size() > 2 ? 3 : 2, {});
    auto name = profile_name(2, false);
    if (!name)
      return 1;
    auto r = call("GET", "/profiles/" + percent_encode_segment(*name));
    if (!r)
      return 1;
    if (json_)
      print_json(*r);
    else
      print_profile(out_, *r);
    return 0;
  }

  int clients() {
    expect_args(1, {"NAME"}, {"clear", "client", "since-ms", "until-ms"});
    std::string path = proxy_path(a_.positional[1]) + "/clients";
    if (a_.flags.count("clear")) {
      if (a_.has("client") || a_.has("since-ms") || a_.has("until-ms"))
        throw UsageError("--clear forgets every client's verdicts: it takes no --client, "
                         "--since-ms or --until-ms");
      if (!call("DELETE", path))
        return 1;
      if (!json_)
        out_ << "forgot what the clients of " << a_.positional[1] << " did\n";
      return 0;
    }
    // The server checks the values (400 naming the parameter); the names map one to one.
    char sep = '?';
    for (const auto& [opt, param] : {std::pair{"client", "client"}, std::pair{"since-ms", "since_ms"},
                                     std::pair{"until-ms", "until_ms"}})
      if (const std::string* v = a_.value(opt)) {
        path += sep + std::string(param) + "=" + percent_encode_segment(*v);
        sep = '&';
      }
    auto r = call("GET", path);
    if (!r)
      return 1;
    if (json_)
      print_json(*r);
    else
      print_tree(out_, *r);
    return 0;
  }

  int stats() {
    expect_args(1, {"NAME"});
    auto r = call("GET", proxy_path(a_.positional[1]) + "/stats");
    if (!r)
      return 1;
    if (json_)
      print_json(*r);
    else
      print_tree(out_, *r);
    return 0;
  }

  int metrics() {
    expect_args(1, {});
    auto r = call("GET", "/metrics");
    if (!r)
      return 1;
    out_ << (r->is_string() ? r->get<std::string>() : r->dump());
    return 0;
  }

  // The log's state as GET /log answers it.
  void print_log(const json& r) {
    if (!r.value("enabled", false)) {
      out_ << "traffic log: off\n";
      return;
    }
    out_ << "traffic log: on, " << field(r, "format") << " to " << field(r, "path") << "\n";
    for (const char* k : {"commands", "keys", "slower_than_us", "sample", "records", "dropped"})
      if (r.contains(k) && !(r[k].is_string() && r[k].get<std::string>().empty()))
        out_ << "  " << k << ": " << plain(r[k]) << "\n";
  }

  int log() {
    const auto& p = a_.positional;
    json body;
    if (p.size() < 2) {
      expect_args(1, {});
    } else if (p[1] == "on") {
      expect_args(2, {"PATH"}, {"format"});
      body = {{"path", p[2]}};
      if (const std::string* f = a_.value("format")) {
        if (*f != "json" && *f != "text")
          throw UsageError(fmt::format("--format must be json or text, not '{}'", *f));
        body["format"] = *f;
      }
    } else if (p[1] == "off") {
      expect_args(2, {});
      body = {{"enabled", false}};
    } else {
      throw UsageError(fmt::format("unknown log command '{}' (on PATH, off)", p[1]));
    }
    auto r = body.is_null() ? call("GET", "/log") : call("POST", "/log", &body);
    if (!r)
      return 1;
    if (json_)
      print_json(*r);
    else
      print_log(*r);
    return 0;
  }

  int version() {
    expect_args(1, {});
    auto r = call("GET", "/version");
    if (!r)
      return 1;
    if (json_) {
      print_json(*r);
      return 0;
    }
    std::string server = r->is_object() ? field(*r, "version") : plain(*r);
    while (!server.empty() && (server.back() == '\n' || server.back() == ' '))
      server.pop_back();
    out_ << "client: faultline " << FAULTLINE_VERSION << "\n"
         << "server: " << server << " (" << client_->address() << ")\n";
    return 0;
  }

  Args a_;
  std::ostream& out_;
  std::ostream& err_;
  std::unique_ptr<HttpClient> client_;
  bool json_ = false;
};

} // namespace

int run_ctl(const std::vector<std::string>& args, std::ostream& out, std::ostream& err,
            const std::string& env_token) {
  try {
    Args a = parse_args(args);
    if (a.flags.count("help") != 0 || (!a.positional.empty() && a.positional[0] == "help")) {
      out << kUsage;
      return 0;
    }
    if (a.positional.empty())
      throw UsageError("missing command");
    Ctl ctl(std::move(a), out, err, env_token);
    return ctl.run();
  } catch (const UsageError& e) {
    err << "faultline ctl: " << e.what() << " (try 'faultline ctl --help')\n";
    return 2;
  } catch (const std::exception& e) {
    err << "faultline ctl: " << e.what() << "\n";
    return 1;
  }
}

int run_ctl(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i)
    args.emplace_back(argv[i]);
  const char* token = std::getenv("FAULTLINE_API_TOKEN");
  return run_ctl(args, std::cout, std::cerr, token != nullptr ? token : "");
}

} // namespace faultline::control
