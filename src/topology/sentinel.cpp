// Sentinel mode (see sentinel.h).

#include "topology/sentinel.h"

#include <algorithm>
#include <map>

#include "base/log.h"
#include "proxy/proxy.h"
#include "resp/value.h"
#include "topology/redis_call.h"
#include "uv/address.h"

namespace faultline::topology {

namespace {

using Fields = std::map<std::string, std::string>;

// Sentinel's field/value lists: a flat array (RESP2) or a map (RESP3).
bool fields(const resp::Value& v, Fields& out) {
  if (!v.is_aggregate() || v.elems.size() % 2) return false;
  for (size_t i = 0; i + 1 < v.elems.size(); i += 2) {
    const std::string* k = v.elems[i].text();
    const std::string* x = v.elems[i + 1].text();
    if (k && x) out[*k] = *x;
  }
  return true;
}

std::string address_of(const Fields& f) {
  auto ip = f.find("ip"), port = f.find("port");
  if (ip == f.end() || port == f.end()) return {};
  int p = 0;
  try {
    p = std::stoi(port->second);
  } catch (...) {
    return {};
  }
  if (p <= 0 || p > 65535) return {};
  return uv::Endpoint{ip->second, uint16_t(p)}.str();
}

std::string flags_of(const Fields& f) {
  auto it = f.find("flags");
  return it == f.end() ? std::string() : it->second;
}

// One look: three questions to one sentinel, the next sentinel if any fails.
struct Look : std::enable_shared_from_this<Look> {
  uv_loop_t* loop = nullptr;
  uint32_t timeout_ms = 0;
  std::string master;
  std::vector<std::string> list;
  std::string errors;
  std::vector<SentinelNode> nodes;
  std::function<void(std::string, std::vector<SentinelNode>, const std::string&)> done;

  void fail(size_t i, const std::string& why) {
    if (!errors.empty()) errors += "; ";
    errors += list[i] + ": " + why;
    ask(i + 1);
  }
  // The reply as a value; false (and the next sentinel asked) when it is not one.
  bool value(size_t i, const CallResult& r, const char* what, resp::Value& v) {
    if (!r.ok()) {
      fail(i, r.error);
      return false;
    }
    if (r.redis_error()) {
      fail(i, std::string(what) + ": " + r.redis_error_text());
      return false;
    }
    auto d = resp::decode(r.reply);
    if (!d) {
      fail(i, std::string(what) + ": an answer faultline cannot read");
      return false;
    }
    v = std::move(*d);
    return true;
  }

  void ask(size_t i) {
    if (i >= list.size()) {
      done(errors.empty() ? "no sentinel to ask" : errors, {}, {});
      return;
    }
    nodes.clear();
    nodes.push_back({list[i], "sentinel", {}});
    auto self = shared_from_this();
    call(loop, list[i], {"SENTINEL", "MASTER", master}, timeout_ms, [self, i](CallResult r) {
      resp::Value v;
      if (!self->value(i, r, "SENTINEL MASTER", v)) return;
      Fields f;
      if (!fields(v, f) || address_of(f).empty())
        return self->fail(i, "SENTINEL MASTER gave no address");
      self->nodes.push_back({address_of(f), "master", flags_of(f)});
      self->ask_master_addr(i);
    });
  }

  // The master's address as clients are told it: during a failover, GET-MASTER-ADDR-BY-NAME
  // names the promoted replica as soon as the others are being reconfigured, while SENTINEL
  // MASTER names the old master until the failover ends. Faultline follows what clients follow.
  void ask_master_addr(size_t i) {
    auto self = shared_from_this();
    call(loop, list[i], {"SENTINEL", "GET-MASTER-ADDR-BY-NAME", master}, timeout_ms,
         [self, i](CallResult r) {
           resp::Value v;
           if (!self->value(i, r, "SENTINEL GET-MASTER-ADDR-BY-NAME", v))
             return;
           if (v.is_aggregate() && v.elems.size() == 2) {
             const std::string* ip = v.elems[0].text();
             const std::string* port = v.elems[1].text();
             Fields f;
             if (ip && port)
               f = {{"ip", *ip}, {"port", *port}};
             if (const std::string a = address_of(f);
                 !a.empty() && a != self->nodes.back().address) {
               // The old master stays listed, as the replica it is becoming (its flags say
               // failover_in_progress).
               SentinelNode old = self->nodes.back();
               old.role = "replica";
               self->nodes.back().address = a;
               self->nodes.push_back(std::move(old));
             }
           }
           self->ask_replicas(i);
         });
  }

  void ask_replicas(size_t i) {
    auto self = shared_from_this();
    call(loop, list[i], {"SENTINEL", "REPLICAS", master}, timeout_ms, [self, i](CallResult r2) {
      resp::Value v2;
      if (!self->value(i, r2, "SENTINEL REPLICAS", v2))
        return;
      for (const auto& e : v2.elems) {
        Fields f2;
        const std::string a = fields(e, f2) ? address_of(f2) : std::string();
        // The promoted replica is the master already, and the old master listed (above).
        if (!a.empty() && std::none_of(self->nodes.begin(), self->nodes.end(),
                                       [&](const SentinelNode& n) { return n.address == a; }))
          self->nodes.push_back({a, "replica", flags_of(f2)});
      }
      call(self->loop, self->list[i], {"SENTINEL", "SENTINELS", self->master}, self->timeout_ms,
           [self, i](CallResult r3) {
             resp::Value v3;
             if (!self->value(i, r3, "SENTINEL SENTINELS", v3))
               return;
             for (const auto& e : v3.elems) {
               Fields f3;
               if (fields(e, f3) && !address_of(f3).empty())
                 self->nodes.push_back({address_of(f3), "sentinel", flags_of(f3)});
             }
             self->done({}, std::move(self->nodes), self->list[i]);
           });
    });
  }
};

} // namespace

Sentinel::Sentinel(uv_loop_t* loop, Front& front, SentinelOptions opts)
    : loop_(loop), front_(front), opts_(std::move(opts)), timer_(new uv_timer_t),
      alive_(std::make_shared<bool>(true)) {
  uv_timer_init(loop_, timer_);
  timer_->data = this;
  front_.on_new_node([this](const std::string&) { refresh_soon(); });
}

Sentinel::~Sentinel() {
  *alive_ = false;
  if (!closed_)
    uv_close(reinterpret_cast<uv_handle_t*>(timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
}

void Sentinel::start(std::function<void(std::string)> done) {
  first_ = std::move(done);
  look();
}

void Sentinel::close(std::function<void()> done) {
  if (closed_) {
    if (done) done();
    return;
  }
  closed_ = true;
  *alive_ = false;
  auto* cb = new std::function<void()>(std::move(done));
  timer_->data = cb;
  uv_close(reinterpret_cast<uv_handle_t*>(timer_), [](uv_handle_t* h) {
    auto* f = static_cast<std::function<void()>*>(h->data);
    delete reinterpret_cast<uv_timer_t*>(h);
    if (*f) (*f)();
    delete f;
  });
}

void Sentinel::refresh_soon() {
  if (closed_) return;
  if (looking_) {
    again_ = true;
    return;
  }
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<Sentinel*>(t->data)->look(); }, 0, 0);
}

void Sentinel::look() {
  if (closed_ || looking_) return;
  looking_ = true;
  again_ = false;
  ++looks_;
  auto l = std::make_shared<Look>();
  l->loop = loop_;
  l->timeout_ms = opts_.timeout_ms;
  l->master = opts_.master;
  auto add = [&](const std::string& a) {
    if (!a.empty() && std::find(l->list.begin(), l->list.end(), a) == l->list.end())
      l->list.push_back(a);
  };
  add(last_good_);
  for (const auto& n : nodes_)
    if (n.role == "sentinel") add(n.address);
  for (const auto& s : opts_.seeds) add(s);
  l->done = [this, alive = alive_](std::string err, std::vector<SentinelNode> nodes,
                                   const std::string& from) {
    if (*alive) looked(std::move(err), std::move(nodes), from);
  };
  l->ask(0);
}

void Sentinel::looked(std::string err, std::vector<SentinelNode> nodes, const std::string& from) {
  looking_ = false;
  if (!err.empty()) {
    ++failures_;
    if (err != last_error_) log::warn("sentinel: cannot read the topology: {}", err);
    last_error_ = err;
    if (first_) {
      auto f = std::move(first_);
      first_ = nullptr;
      f(err);
      return;
    }
  } else {
    last_error_.clear();
    last_good_ = from;
    // The seeds first, in the order given (the first gets --listen's port), then the other
    // sentinels, the master and the replicas.
    std::vector<std::pair<std::string, std::string>> order;  // address, prefix
    for (const auto& s : opts_.seeds) order.emplace_back(s, "sentinel");
    for (const char* role : {"sentinel", "master", "replica"})
      for (const auto& n : nodes)
        if (n.role == role) order.emplace_back(n.address, role == std::string("sentinel") ? "sentinel" : "node");
    std::string first_error;
    for (const auto& [addr, prefix] : order) {
      const bool known = front_.proxy_for(addr) != nullptr;
      std::string e;
      if (!front_.ensure(addr, prefix, e)) {
        if (first_error.empty()) first_error = addr + ": " + e;
        log::warn("sentinel: cannot front {}: {}", addr, e);
      } else if (!known && !first_) {
        log::info("sentinel: {} joined: fronted by proxy {}", addr, front_.proxy_name_for(addr));
      }
    }
    std::string old_master, new_master;
    for (const auto& n : nodes_)
      if (n.role == "master") old_master = n.address;
    for (const auto& n : nodes)
      if (n.role == "master") new_master = n.address;
    if (!old_master.empty() && old_master != new_master)
      log::info("sentinel: master {} is now {} (was {})", opts_.master, new_master, old_master);
    nodes_ = std::move(nodes);
    std::vector<std::string> data_nodes;
    for (const auto& n : nodes_)
      if (n.role != "sentinel") data_nodes.push_back(n.address);
    front_.set_master_group(new_master, std::move(data_nodes));
    if (first_) {
      auto f = std::move(first_);
      first_ = nullptr;
      f(first_error);
      if (!first_error.empty()) return;
    }
  }
  if (closed_) return;
  uv_timer_start(timer_, [](uv_timer_t* t) { static_cast<Sentinel*>(t->data)->look(); },
                 again_ ? 0 : opts_.refresh_ms, 0);
}

nlohmann::json Sentinel::json() const {
  nlohmann::json out;
  out["mode"] = "sentinel";
  out["master_name"] = opts_.master;
  out["seeds"] = opts_.seeds;
  out["refresh_ms"] = opts_.refresh_ms;
  out["looks"] = looks_;
  out["failed_looks"] = failures_;
  out["last_error"] = last_error_.empty() ? nlohmann::json(nullptr) : nlohmann::json(last_error_);
  out["reply_nodes"] = front_.reply_nodes_json();
  auto& arr = out["nodes"] = nlohmann::json::array();
  std::string master;
  for (const auto& n : nodes_)
    if (n.role == "master") master = n.address;
  for (const auto& n : nodes_) {
    nlohmann::json j;
    j["address"] = n.address;
    j["id"] = nullptr;
    j["role"] = n.role;
    j["flags"] = n.flags;
    j["master"] = n.role == "replica" && !master.empty() ? nlohmann::json(master)
                                                         : nlohmann::json(nullptr);
    j["slots"] = nlohmann::json::array();
    const std::string name = front_.proxy_name_for(n.address);
    j["proxy"] = name.empty() ? nlohmann::json(nullptr) : nlohmann::json(name);
    if (auto l = front_.listener(n.address)) j["listen"] = uv::Endpoint{l->host, l->port}.str();
    else j["listen"] = nullptr;
    arr.push_back(std::move(j));
  }
  return out;
}

} // namespace faultline::topology
