#include "resp/rewrite.h"

#include <algorithm>
#include <cstddef>
#include <initializer_list>
#include <vector>

#include "resp/value.h"

namespace faultline::resp {

namespace {

char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c - 'A' + 'a') : c; }

bool iequals(std::string_view a, std::string_view lower_b) {
  if (a.size() != lower_b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (lower(a[i]) != lower_b[i]) return false;
  return true;
}

// A port as Redis writes it: canonical decimal, 0..65535.
std::optional<uint16_t> parse_port(std::string_view s) {
  if (s.empty() || s.size() > 5 || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint32_t(c - '0');
  }
  if (v > 65535) return std::nullopt;
  return uint16_t(v);
}

// "host:port" with the last colon before the port (Redis's IPv6 form ::1:7002), or
// "[host]:port".
struct Addr {
  std::string_view host;
  uint16_t port = 0;
  bool bracketed = false;
};
std::optional<Addr> parse_addr(std::string_view s) {
  Addr a;
  std::string_view port;
  if (!s.empty() && s[0] == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':')
      return std::nullopt;
    a.host = s.substr(1, close - 1);
    a.bracketed = true;
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos) return std::nullopt;
    a.host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  auto p = parse_port(port);
  if (!p) return std::nullopt;
  a.port = *p;
  return a;
}

// Redis's forms that say "no host here": kept as they are, only the port changes.
bool keeps_host(std::string_view host) { return host.empty() || host == "?"; }

std::string join_addr(std::string_view host, uint16_t port, bool bracketed) {
  std::string s;
  if (bracketed) s += '[';
  s += host;
  if (bracketed) s += ']';
  s += ':';
  s += std::to_string(port);
  return s;
}

class Rewriter {
public:
  explicit Rewriter(const AddressMap& m) : map_(m) {}
  bool changed() const { return changed_; }

  // The listener for the first of the hosts (with that port) the map knows.
  std::optional<HostPort> lookup(std::initializer_list<std::string_view> hosts, uint16_t port) {
    for (std::string_view h : hosts) {
      auto l = map_.listener_for(h, port);
      if (l && usable(l->host)) return l;
    }
    return std::nullopt;
  }
  std::optional<HostPort> lookup(std::string_view host, uint16_t port) {
    return lookup({host}, port);
  }

  void set(std::string& s, std::string_view to) {
    if (s == to) return;
    s.assign(to);
    changed_ = true;
  }
  void set(int64_t& i, int64_t to) {
    if (i == to) return;
    i = to;
    changed_ = true;
  }
  // A host field: the listener's host, unless Redis's own "no host" form.
  void set_host(std::string& s, const HostPort& l) {
    if (!keeps_host(s)) set(s, l.host);
  }
  // "host:port" text (MOVED, CLUSTER NODES, INFO's address=): the listener's, or unchanged.
  bool set_addr(std::string& s) {
    auto a = parse_addr(s);
    if (!a) return false;
    auto l = lookup(a->host, a->port);
    if (!l) return false;
    set(s, join_addr(keeps_host(a->host) ? a->host : std::string_view(l->host), l->port,
                     a->bracketed));
    return true;
  }
  void mark() { changed_ = true; }

private:
  static bool usable(std::string_view host) {
    return host.find_first_of(" \t\r\n,@") == std::string_view::npos;
  }

  const AddressMap& map_;
  bool changed_ = false;
};

// --- values --------------------------------------------------------------------------------

bool is_string(const Value& v) { return v.text() != nullptr; }

// The key/value pairs of a RESP3 map, or of RESP2's flat field/value array.
bool is_map_like(const Value& v) {
  if (v.type == Type::Map) return true;
  if (v.type != Type::Array || v.is_null || v.elems.size() % 2 != 0) return false;
  for (size_t i = 0; i < v.elems.size(); i += 2)
    if (!is_string(v.elems[i])) return false;
  return true;
}

Value* field(Value& v, std::string_view key) {
  if (!is_map_like(v)) return nullptr;
  for (size_t i = 0; i + 1 < v.elems.size(); i += 2) {
    const std::string* k = v.elems[i].text();
    if (k != nullptr && *k == key) return &v.elems[i + 1];
  }
  return nullptr;
}

bool erase_field(Value& v, std::string_view key) {
  if (!is_map_like(v)) return false;
  for (size_t i = 0; i + 1 < v.elems.size(); i += 2) {
    const std::string* k = v.elems[i].text();
    if (k != nullptr && *k == key) {
      v.elems.erase(v.elems.begin() + std::ptrdiff_t(i), v.elems.begin() + std::ptrdiff_t(i + 2));
      return true;
    }
  }
  return false;
}

// A host: a string, or the null of CLUSTER SLOTS's unknown endpoint ("").
std::optional<std::string_view> host_of(const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (const std::string* s = v->text()) return std::string_view(*s);
  if (v->type == Type::Null || v->is_null) return std::string_view();
  return std::nullopt;
}

// A port: an integer or a decimal string.
std::optional<uint16_t> port_of(const Value* v) {
  if (v == nullptr) return std::nullopt;
  if (v->type == Type::Integer) {
    if (v->integer < 0 || v->integer > 65535) return std::nullopt;
    return uint16_t(v->integer);
  }
  if (const std::string* s = v->text()) return parse_port(*s);
  return std::nullopt;
}

void set_port(Rewriter& rw, Value& v, uint16_t port) {
  if (v.type == Type::Integer)
    rw.set(v.integer, port);
  else if (std::string* s = v.text())
    rw.set(*s, std::to_string(port));
}

void set_host(Rewriter& rw, Value* v, const HostPort& l) {
  if (v == nullptr) return;
  if (std::string* s = v->text()) rw.set_host(*s, l);
}

// --- Cluster -------------------------------------------------------------------------------

// [endpoint, port, id, metadata]: metadata a map (RESP3) or flat array (RESP2) that may hold
// "ip" (when the endpoint is not the IP) and "hostname".
void slots_node(Rewriter& rw, Value& node) {
  if (node.type != Type::Array || node.elems.size() < 2) return;
  auto endpoint = host_of(&node.elems[0]);
  auto port = port_of(&node.elems[1]);
  if (!endpoint || !port) return;
  Value* meta = node.elems.size() >= 4 ? &node.elems[3] : nullptr;
  auto ip = host_of(meta ? field(*meta, "ip") : nullptr);
  auto hostname = host_of(meta ? field(*meta, "hostname") : nullptr);
  std::optional<HostPort> l;
  if (ip) l = rw.lookup(*ip, *port);
  if (!l) l = rw.lookup(*endpoint, *port);
  if (!l && hostname) l = rw.lookup(*hostname, *port);
  if (!l) return;
  set_host(rw, &node.elems[0], *l);
  set_port(rw, node.elems[1], l->port);
  if (meta != nullptr) {
    set_host(rw, field(*meta, "ip"), *l);
    set_host(rw, field(*meta, "hostname"), *l);
  }
}

bool cluster_slots(Rewriter& rw, Value& top) {
  if (top.type != Type::Array || top.is_null) return false;
  for (Value& range : top.elems) {
    if (range.type != Type::Array || range.elems.size() < 3) continue;
    for (size_t i = 2; i < range.elems.size(); ++i) slots_node(rw, range.elems[i]);
  }
  return true;
}

// One node of CLUSTER SHARDS: a map of id, port, tls-port?, ip, endpoint, hostname?, ...
void shards_node(Rewriter& rw, Value& node) {
  auto port = port_of(field(node, "port"));
  if (!port) return;
  std::optional<HostPort> l;
  for (const char* key : {"ip", "endpoint", "hostname"}) {
    if (auto h = host_of(field(node, key)); h && !l) l = rw.lookup(*h, *port);
  }
  if (!l) return;
  set_host(rw, field(node, "ip"), *l);
  set_host(rw, field(node, "endpoint"), *l);
  set_host(rw, field(node, "hostname"), *l);
  set_port(rw, *field(node, "port"), l->port);
  // A TLS client would go around faultline, which does not proxy TLS.
  if (erase_field(node, "tls-port")) rw.mark();
}

bool cluster_shards(Rewriter& rw, Value& top) {
  if (top.type != Type::Array || top.is_null) return false;
  for (Value& shard : top.elems) {
    Value* nodes = field(shard, "nodes");
    if (nodes == nullptr || nodes->type != Type::Array) continue;
    for (Value& node : nodes->elems) shards_node(rw, node);
  }
  return true;
}

// One line of CLUSTER NODES: "<id> <ip:port@cport[,hostname[,aux=...]]> <flags> ...".
void nodes_line(Rewriter& rw, std::string& line) {
  const size_t a = line.find(' ');
  if (a == std::string::npos) return;
  const size_t b = std::min(line.find(' ', a + 1), line.size());
  const std::string_view field(line.data() + a + 1, b - a - 1);
  const size_t at = field.find('@');
  if (at == std::string_view::npos) return;
  auto addr = parse_addr(field.substr(0, at));
  if (!addr) return;
  // After '@': the cluster bus port, then the host name (when set) and any aux fields (7.2).
  std::string_view bus = field.substr(at);
  std::string_view hostname;
  size_t hn_at = bus.find(',');
  if (hn_at != std::string_view::npos) {
    hostname = bus.substr(hn_at + 1);
    hostname = hostname.substr(0, hostname.find(','));
    if (hostname.find('=') != std::string_view::npos) hostname = {};
  }
  std::optional<HostPort> l = rw.lookup(addr->host, addr->port);
  if (!l && !hostname.empty()) l = rw.lookup(hostname, addr->port);
  if (!l) return;
  std::string out = join_addr(keeps_host(addr->host) ? addr->host : std::string_view(l->host),
                              l->port, addr->bracketed);
  if (hostname.empty()) {
    out += bus;
  } else {
    out += bus.substr(0, hn_at + 1);
    out += l->host;
    out += bus.substr(hn_at + 1 + hostname.size());
  }
  if (out == field) return;
  line.replace(a + 1, field.size(), out);
  rw.mark();
}

void nodes_text(Rewriter& rw, std::string& text) {
  std::string out;
  out.reserve(text.size() + 64);
  size_t at = 0;
  while (at < text.size()) {
    size_t nl = text.find('\n', at);
    nl = nl == std::string::npos ? text.size() : nl + 1;
    std::string line = text.substr(at, nl - at);
    nodes_line(rw, line);
    out += line;
    at = nl;
  }
  text = std::move(out);
}

bool cluster_nodes(Rewriter& rw, Value& top) {
  if (std::string* s = top.text()) {
    nodes_text(rw, *s);
    return true;
  }
  if (top.type != Type::Array || top.is_null) return false;
  for (Value& e : top.elems)
    if (std::string* s = e.text()) nodes_text(rw, *s);
  return true;
}

// --- Sentinel ------------------------------------------------------------------------------

// A host field and its port field of one instance ("ip"/"port", "master-host"/"master-port").
std::optional<HostPort> host_port_fields(Rewriter& rw, Value& inst, std::string_view host_key,
                                         std::string_view port_key) {
  Value* hv = field(inst, host_key);
  Value* pv = field(inst, port_key);
  auto host = host_of(hv);
  auto port = port_of(pv);
  if (!host || !port) return std::nullopt;
  auto l = rw.lookup(*host, *port);
  if (!l) return std::nullopt;
  set_host(rw, hv, *l);
  set_port(rw, *pv, l->port);
  return l;
}

void sentinel_instance(Rewriter& rw, Value& inst) {
  if (!is_map_like(inst)) return;
  auto host = host_of(field(inst, "ip"));
  auto port = port_of(field(inst, "port"));
  std::string old_name;
  if (host && port) old_name = join_addr(*host, *port, false);
  if (auto l = host_port_fields(rw, inst, "ip", "port")) {
    // A replica is named after its address.
    Value* name = field(inst, "name");
    std::string* s = name ? name->text() : nullptr;
    if (s != nullptr && *s == old_name) rw.set_addr(*s);
  }
  host_port_fields(rw, inst, "master-host", "master-port");
}

bool sentinel_master_addr(Rewriter& rw, Value& top) {
  if (top.type != Type::Array || top.elems.size() != 2) return false;
  auto host = host_of(&top.elems[0]);
  auto port = port_of(&top.elems[1]);
  if (!host || !port) return false;
  auto l = rw.lookup(*host, *port);
  if (!l) return false;
  set_host(rw, &top.elems[0], *l);
  set_port(rw, top.elems[1], l->port);
  return true;
}

bool sentinel_instances(Rewriter& rw, Value& top) {
  if (top.type != Type::Array || top.is_null) return false;
  for (Value& e : top.elems) sentinel_instance(rw, e);
  return true;
}

// --- ROLE and INFO -------------------------------------------------------------------------

bool role(Rewriter& rw, Value& top) {
  if (top.type != Type::Array || top.elems.empty() || !is_string(top.elems[0])) return false;
  const std::string& r = *top.elems[0].text();
  auto pair = [&](Value& hv, Value& pv) {
    auto host = host_of(&hv);
    auto port = port_of(&pv);
    if (!host || !port) return;
    if (auto l = rw.lookup(*host, *port)) {
      set_host(rw, &hv, *l);
      set_port(rw, pv, l->port);
    }
  };
  if (r == "master" && top.elems.size() >= 3 && top.elems[2].type == Type::Array) {
    for (Value& replica : top.elems[2].elems)
      if (replica.type == Type::Array && replica.elems.size() >= 2)
        pair(replica.elems[0], replica.elems[1]);
    return true;
  }
  if (r == "slave" && top.elems.size() >= 3) {
    pair(top.elems[1], top.elems[2]);
    return true;
  }
  return r == "sentinel";
}

// "k1=v1,k2=v2,..." (INFO's slaveN: and Sentinel's masterN: lines): the value of key.
struct Span {
  size_t at = 0, len = 0;
  bool found = false;
};
Span kv_value(std::string_view s, std::string_view key) {
  size_t at = 0;
  while (at <= s.size()) {
    size_t end = std::min(s.find(',', at), s.size());
    std::string_view item = s.substr(at, end - at);
    if (item.size() > key.size() && item.substr(0, key.size()) == key &&
        item[key.size()] == '=')
      return {at + key.size() + 1, item.size() - key.size() - 1, true};
    at = end + 1;
  }
  return {};
}

bool starts_with_indexed(std::string_view line, std::string_view prefix) {
  // "slave0:", "master12:": the prefix, digits, a colon.
  if (line.substr(0, prefix.size()) != prefix) return false;
  size_t i = prefix.size();
  const size_t digits = i;
  while (i < line.size() && line[i] >= '0' && line[i] <= '9') ++i;
  return i > digits && i < line.size() && line[i] == ':';
}

void info_text(Rewriter& rw, std::string& text) {
  // Lines split on \n (Redis ends each with \r\n; the \r stays with the line's end).
  std::vector<std::string> lines;
  for (size_t at = 0; at < text.size();) {
    size_t nl = text.find('\n', at);
    nl = nl == std::string::npos ? text.size() : nl + 1;
    lines.push_back(text.substr(at, nl - at));
    at = nl;
  }
  auto body = [](const std::string& l) {  // the line without its line break
    std::string_view s(l);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.remove_suffix(1);
    return s;
  };
  auto value_of = [&](std::string& l, std::string_view key) -> std::optional<std::string_view> {
    std::string_view s = body(l);
    if (s.size() < key.size() + 1 || s.substr(0, key.size()) != key || s[key.size()] != ':')
      return std::nullopt;
    return s.substr(key.size() + 1);
  };
  auto replace_value = [&](std::string& l, size_t at, size_t len, std::string_view to) {
    if (std::string_view(l).substr(at, len) == to) return;
    l.replace(at, len, to);
    rw.mark();
  };
  std::string* master_host = nullptr;
  std::string* master_port = nullptr;
  for (std::string& l : lines) {
    if (value_of(l, "master_host")) master_host = &l;
    else if (value_of(l, "master_port")) master_port = &l;
    else if (auto v = value_of(l, "tcp_port")) {
      if (auto port = parse_port(*v))
        if (auto lp = rw.lookup(std::string_view(), *port))
          replace_value(l, 9, v->size(), std::to_string(lp->port));
    } else if (starts_with_indexed(l, "slave")) {
      const size_t colon = l.find(':') + 1;
      std::string_view kv = body(l).substr(colon);
      Span ip = kv_value(kv, "ip");
      Span port = kv_value(kv, "port");
      if (!ip.found || !port.found) continue;
      auto p = parse_port(kv.substr(port.at, port.len));
      if (!p) continue;
      auto lp = rw.lookup(kv.substr(ip.at, ip.len), *p);
      if (!lp) continue;
      // The later field first, so that the earlier one's offset still holds.
      const bool ip_first = ip.at < port.at;
      std::string host_to = keeps_host(kv.substr(ip.at, ip.len))
                                ? std::string(kv.substr(ip.at, ip.len))
                                : lp->host;
      const std::string port_to = std::to_string(lp->port);
      if (ip_first) {
        replace_value(l, colon + port.at, port.len, port_to);
        replace_value(l, colon + ip.at, ip.len, host_to);
      } else {
        replace_value(l, colon + ip.at, ip.len, host_to);
        replace_value(l, colon + port.at, port.len, port_to);
      }
    } else if (starts_with_indexed(l, "master")) {
      // Sentinel: masterN:name=...,status=...,address=ip:port,...
      const size_t colon = l.find(':') + 1;
      std::string_view kv = body(l).substr(colon);
      Span addr = kv_value(kv, "address");
      if (!addr.found) continue;
      std::string a(kv.substr(addr.at, addr.len));
      if (rw.set_addr(a)) replace_value(l, colon + addr.at, addr.len, a);
    }
  }
  if (master_host != nullptr && master_port != nullptr) {
    std::string_view host = *value_of(*master_host, "master_host");
    std::string_view port_s = *value_of(*master_port, "master_port");
    if (auto port = parse_port(port_s)) {
      if (auto lp = rw.lookup(host, *port)) {
        if (!keeps_host(host)) replace_value(*master_host, 12, host.size(), lp->host);
        replace_value(*master_port, 12, port_s.size(), std::to_string(lp->port));
      }
    }
  }
  std::string out;
  out.reserve(text.size() + 64);
  for (const std::string& l : lines) out += l;
  text = std::move(out);
}

bool info(Rewriter& rw, Value& top) {
  std::string* s = top.text();
  if (s == nullptr) return false;
  info_text(rw, *s);
  return true;
}

// --- Sentinel events -----------------------------------------------------------------------

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  size_t at = 0;
  for (;;) {
    const size_t end = s.find(sep, at);
    out.emplace_back(s.substr(at, end == std::string_view::npos ? s.npos : end - at));
    if (end == std::string_view::npos) return out;
    at = end + 1;
  }
}

std::string join(const std::vector<std::string>& parts, char sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) {
    if (i != 0) out += sep;
    out += parts[i];
  }
  return out;
}

// tokens[h], tokens[p]: a host and its port.
std::optional<HostPort> token_pair(Rewriter& rw, std::vector<std::string>& t, size_t h,
                                   size_t p) {
  if (p >= t.size()) return std::nullopt;
  auto port = parse_port(t[p]);
  if (!port) return std::nullopt;
  auto l = rw.lookup(t[h], *port);
  if (!l) return std::nullopt;
  rw.set_host(t[h], *l);
  rw.set(t[p], std::to_string(l->port));
  return l;
}

void event_payload(Rewriter& rw, std::string_view channel, std::string& payload) {
  if (channel == "__sentinel__:hello") {
    std::vector<std::string> t = split(payload, ',');
    if (t.size() < 7) return;
    token_pair(rw, t, 0, 1);
    token_pair(rw, t, 5, 6);
    payload = join(t, ',');
    return;
  }
  if (channel.empty() || (channel[0] != '+' && channel[0] != '-')) return;
  std::vector<std::string> t = split(payload, ' ');
  if (channel == "+switch-master") {
    token_pair(rw, t, 1, 2);
    token_pair(rw, t, 3, 4);
    payload = join(t, ' ');
    return;
  }
  // "%@": <type> <name> <ip> <port> [@ <master-name> <master-ip> <master-port>] <tail>
  if (t.size() < 4 || (t[0] != "master" && t[0] != "slave" && t[0] != "sentinel")) return;
  const std::string old_name = t[1];
  const std::string old_addr = join_addr(t[2], parse_port(t[3]).value_or(0), false);
  if (token_pair(rw, t, 2, 3) && old_name == old_addr) rw.set_addr(t[1]);
  size_t tail = 4;
  if (t.size() >= 8 && t[4] == "@") {
    token_pair(rw, t, 6, 7);
    tail = 8;
  }
  for (size_t i = tail; i < t.size(); ++i) {
    if (t[i] == "ip" && i + 3 < t.size() && t[i + 2] == "port") {
      token_pair(rw, t, i + 1, i + 3);  // +sentinel-address-switch ... ip <ip> port <port>
      i += 3;
    } else if (t[i] == "#duplicate" && i + 2 < t.size() && t[i + 1] == "of") {
      rw.set_addr(t[i + 2]);  // -dup-sentinel ... #duplicate of <ip>:<port> or <runid>
      i += 2;
    }
  }
  payload = join(t, ' ');
}

bool sentinel_event(Rewriter& rw, Value& top) {
  if ((top.type != Type::Array && top.type != Type::Push) || top.is_null) return false;
  auto& e = top.elems;
  for (const Value& v : e)
    if (!is_string(v)) return false;
  if (e.size() == 3 && *e[0].text() == "message") {
    event_payload(rw, *e[1].text(), *e[2].text());
    return true;
  }
  if (e.size() == 4 && *e[0].text() == "pmessage") {
    event_payload(rw, *e[2].text(), *e[3].text());
    return true;
  }
  return false;
}

bool redirect(Rewriter& rw, Value& top) {
  if (top.type != Type::Error && top.type != Type::BlobError) return false;
  std::string& s = top.str;
  // MOVED <slot> <addr> / ASK <slot> <addr>
  const size_t sp1 = s.find(' ');
  if (sp1 == std::string::npos) return false;
  const std::string_view word(s.data(), sp1);
  if (word != "MOVED" && word != "ASK") return false;
  const size_t sp2 = s.find(' ', sp1 + 1);
  if (sp2 == std::string::npos) return false;
  const size_t end = std::min(s.find(' ', sp2 + 1), s.size());
  std::string addr = s.substr(sp2 + 1, end - sp2 - 1);
  if (!rw.set_addr(addr)) return true;
  s.replace(sp2 + 1, end - sp2 - 1, addr);
  return true;
}

// Decodes, applies, encodes when something changed.
template <class F>
bool apply(std::string_view frame, const AddressMap& m, std::string& out, F&& f) {
  size_t used = 0;
  auto v = decode(frame, &used);
  if (!v || used != frame.size()) return false;
  Rewriter rw(m);
  if (!f(rw, *v) || !rw.changed()) return false;
  encode(*v, out);
  return true;
}

} // namespace

const char* rewrite_kind_name(RewriteKind k) {
  switch (k) {
  case RewriteKind::None: return "none";
  case RewriteKind::ClusterSlots: return "cluster-slots";
  case RewriteKind::ClusterShards: return "cluster-shards";
  case RewriteKind::ClusterNodes: return "cluster-nodes";
  case RewriteKind::ClusterReplicas: return "cluster-replicas";
  case RewriteKind::SentinelMasterAddr: return "sentinel-get-master-addr-by-name";
  case RewriteKind::SentinelMaster: return "sentinel-master";
  case RewriteKind::SentinelMasters: return "sentinel-masters";
  case RewriteKind::SentinelReplicas: return "sentinel-replicas";
  case RewriteKind::SentinelSentinels: return "sentinel-sentinels";
  case RewriteKind::Role: return "role";
  case RewriteKind::Info: return "info";
  }
  return "none";
}

bool may_rewrite(std::string_view cmd) {
  return iequals(cmd, "cluster") || iequals(cmd, "sentinel") || iequals(cmd, "role") ||
         iequals(cmd, "info");
}

RewriteKind rewrite_kind(std::string_view cmd, std::string_view arg1, std::string_view) {
  if (iequals(cmd, "cluster")) {
    if (iequals(arg1, "slots")) return RewriteKind::ClusterSlots;
    if (iequals(arg1, "shards")) return RewriteKind::ClusterShards;
    if (iequals(arg1, "nodes")) return RewriteKind::ClusterNodes;
    if (iequals(arg1, "replicas") || iequals(arg1, "slaves")) return RewriteKind::ClusterReplicas;
    return RewriteKind::None;
  }
  if (iequals(cmd, "sentinel")) {
    if (iequals(arg1, "get-master-addr-by-name")) return RewriteKind::SentinelMasterAddr;
    if (iequals(arg1, "master")) return RewriteKind::SentinelMaster;
    if (iequals(arg1, "masters")) return RewriteKind::SentinelMasters;
    if (iequals(arg1, "replicas") || iequals(arg1, "slaves")) return RewriteKind::SentinelReplicas;
    if (iequals(arg1, "sentinels")) return RewriteKind::SentinelSentinels;
    return RewriteKind::None;
  }
  if (iequals(cmd, "role")) return RewriteKind::Role;
  // INFO takes any number of sections (7.0); the lines it rewrites appear only in theirs.
  if (iequals(cmd, "info")) return RewriteKind::Info;
  return RewriteKind::None;
}

bool rewrite_reply(RewriteKind k, std::string_view frame, const AddressMap& m, std::string& out) {
  switch (k) {
  case RewriteKind::None:
    return false;
  case RewriteKind::ClusterSlots:
    return apply(frame, m, out, cluster_slots);
  case RewriteKind::ClusterShards:
    return apply(frame, m, out, cluster_shards);
  case RewriteKind::ClusterNodes:
  case RewriteKind::ClusterReplicas:
    return apply(frame, m, out, cluster_nodes);
  case RewriteKind::SentinelMasterAddr:
    return apply(frame, m, out, sentinel_master_addr);
  case RewriteKind::SentinelMaster:
    return apply(frame, m, out, [](Rewriter& rw, Value& v) {
      if (!is_map_like(v)) return false;
      sentinel_instance(rw, v);
      return true;
    });
  case RewriteKind::SentinelMasters:
  case RewriteKind::SentinelReplicas:
  case RewriteKind::SentinelSentinels:
    return apply(frame, m, out, sentinel_instances);
  case RewriteKind::Role:
    return apply(frame, m, out, role);
  case RewriteKind::Info:
    return apply(frame, m, out, info);
  }
  return false;
}

bool rewrite_redirect(std::string_view frame, const AddressMap& m, std::string& out) {
  if (frame.empty() || (frame[0] != '-' && frame[0] != '!')) return false;
  return apply(frame, m, out, redirect);
}

bool rewrite_sentinel_event(std::string_view frame, const AddressMap& m, std::string& out) {
  if (frame.empty() || (frame[0] != '*' && frame[0] != '>')) return false;
  return apply(frame, m, out, sentinel_event);
}

} // namespace faultline::resp
